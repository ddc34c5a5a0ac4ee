#!/usr/bin/env pwsh
# azd postdeploy hook (azure.yaml) on Windows: the same steps as scripts/postdeploy.sh.
# Subscribes the Event Grid trigger on_acr_event to the registry's system topic once the function is deployed
# and indexed (an AzureFunction destination must exist first). azd passes the environment's values as
# environment variables; run by hand, the script asks `azd env get-value` instead. Needs az (logged in) with Bicep.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Set-Location (Join-Path $PSScriptRoot '..')

function Get-AzdValue([string] $Name) {
    $current = [Environment]::GetEnvironmentVariable($Name)
    if (-not $current) {
        $current = (azd env get-value $Name 2>$null)
        if ($LASTEXITCODE -ne 0) { $current = '' }
    }
    if (-not $current) {
        throw "postdeploy: $Name is not set in the azd environment; run 'azd provision' first"
    }
    return "$current".Trim()
}

$subscription = Get-AzdValue 'AZURE_SUBSCRIPTION_ID'
$resourceGroup = Get-AzdValue 'RESOURCE_GROUP'
$functionApp = Get-AzdValue 'AZURE_FUNCTION_APP_NAME'
$systemTopic = Get-AzdValue 'ACR_SYSTEM_TOPIC_NAME'
$storageAccount = Get-AzdValue 'AZURE_STORAGE_ACCOUNT_NAME'
$deadLetterContainer = Get-AzdValue 'EG_DEADLETTER_CONTAINER'
$functionName = 'on_acr_event'

az account show --subscription $subscription --output none 2>$null
if ($LASTEXITCODE -ne 0) {
    throw "postdeploy: az is not logged in to subscription $subscription; run 'az login' and re-run 'azd hooks run postdeploy'"
}

# Flex Consumption indexes the functions a little after the deployment returns.
$attempts = if ($env:POSTDEPLOY_INDEX_ATTEMPTS) { [int] $env:POSTDEPLOY_INDEX_ATTEMPTS } else { 30 }
for ($attempt = 1; $attempt -le $attempts; $attempt++) {
    az functionapp function show --subscription $subscription --resource-group $resourceGroup `
        --name $functionApp --function-name $functionName --output none 2>$null
    if ($LASTEXITCODE -eq 0) { break }
    if ($attempt -eq $attempts) {
        throw "postdeploy: function $functionName is not listed on $functionApp after $attempts attempts; check the deployment, then re-run 'azd hooks run postdeploy'"
    }
    Write-Host "postdeploy: waiting for $functionApp to index $functionName ($attempt/$attempts)"
    Start-Sleep -Seconds 10
}

Write-Host "postdeploy: subscribing $functionApp/$functionName to system topic $systemTopic"
az deployment group create `
    --subscription $subscription `
    --resource-group $resourceGroup `
    --name acrsync-eventgrid-subscription `
    --template-file infra/hooks/eventgrid-subscription.bicep `
    --parameters `
    "systemTopicName=$systemTopic" `
    "functionAppName=$functionApp" `
    "storageAccountName=$storageAccount" `
    "deadLetterContainerName=$deadLetterContainer" `
    "functionName=$functionName" `
    --output none
if ($LASTEXITCODE -ne 0) {
    throw "postdeploy: az deployment group create failed (exit $LASTEXITCODE)"
}
Write-Host "postdeploy: done; pushes to the registry now reach $functionName"
