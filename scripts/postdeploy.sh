#!/usr/bin/env bash
# azd postdeploy hook (azure.yaml): subscribe the Event Grid trigger on_acr_event to the registry's system topic.
# It runs after `azd deploy` because an AzureFunction destination must already exist: Event Grid refuses a
# subscription to a function that is not deployed and indexed yet ("Destination endpoint not found").
# azd passes the environment's values (the UPPER_SNAKE outputs of infra/main.bicep) as environment
# variables; run by hand, the script asks `azd env get-value` instead. Needs az (logged in) with Bicep.
set -euo pipefail
cd "$(dirname "$0")/.."

# value NAME: the azd environment value NAME, or exit with a message saying what is missing.
value() {
  local current="${!1:-}"
  if [ -z "$current" ]; then
    current=$(azd env get-value "$1" 2>/dev/null || true)
  fi
  if [ -z "$current" ]; then
    echo "postdeploy: $1 is not set in the azd environment; run 'azd provision' first" >&2
    return 1
  fi
  printf '%s' "$current"
}

subscription=$(value AZURE_SUBSCRIPTION_ID)
resource_group=$(value RESOURCE_GROUP)
function_app=$(value AZURE_FUNCTION_APP_NAME)
system_topic=$(value ACR_SYSTEM_TOPIC_NAME)
storage_account=$(value AZURE_STORAGE_ACCOUNT_NAME)
dead_letter_container=$(value EG_DEADLETTER_CONTAINER)
function_name=on_acr_event

if ! az account show --subscription "$subscription" --output none 2>/dev/null; then
  echo "postdeploy: az is not logged in to subscription $subscription; run 'az login' and re-run 'azd hooks run postdeploy'" >&2
  exit 1
fi

# Flex Consumption indexes the functions a little after the deployment returns.
attempts=${POSTDEPLOY_INDEX_ATTEMPTS:-30}
for attempt in $(seq 1 "$attempts"); do
  if az functionapp function show --subscription "$subscription" --resource-group "$resource_group" \
    --name "$function_app" --function-name "$function_name" --output none 2>/dev/null; then
    break
  fi
  if [ "$attempt" -eq "$attempts" ]; then
    echo "postdeploy: function $function_name is not listed on $function_app after $attempts attempts;" \
      "check the deployment, then re-run 'azd hooks run postdeploy'" >&2
    exit 1
  fi
  echo "postdeploy: waiting for $function_app to index $function_name ($attempt/$attempts)"
  sleep 10
done

echo "postdeploy: subscribing $function_app/$function_name to system topic $system_topic"
az deployment group create \
  --subscription "$subscription" \
  --resource-group "$resource_group" \
  --name acrsync-eventgrid-subscription \
  --template-file infra/hooks/eventgrid-subscription.bicep \
  --parameters \
  systemTopicName="$system_topic" \
  functionAppName="$function_app" \
  storageAccountName="$storage_account" \
  deadLetterContainerName="$dead_letter_container" \
  functionName="$function_name" \
  --output none
echo "postdeploy: done; pushes to the registry now reach $function_name"
