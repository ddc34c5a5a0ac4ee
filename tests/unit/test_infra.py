"""The azd template, checked offline: no Bicep compiler, no azd, no subscription here.

Every .bicep file under infra/ is parsed with pycep-parser (a Lark grammar for Bicep; it understands
resources, modules, loops, conditions, decorators and expressions, but not Bicep's type system), and the
tests assert on the parsed documents: which resources exist, the security properties, the role assignments,
the app settings against the settings the code reads, the parameters file, the outputs the hooks and the
README use, azure.yaml and the Event Grid subscription the postdeploy hook deploys. Text-level checks
cover what a parser cannot see (comments naming each role, no key material anywhere). The hook scripts are
linted with shellcheck and the POSIX one is run against stub `az`/`azd` commands.

What this cannot show: that ARM accepts the templates (API versions, AVM module parameters, region
availability), that role assignments propagate, or that the deployed app works. That needs `azd up`
against a real subscription (README, "Deploy to Azure").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

import shared.config
from shared import observability
from shared.adapters import azure_monitor
from shared.adapters.azure_tables import _table_names

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Built-in role definitions (name -> id), from https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
# as tabulated in the project's reference notes (ecosystem.md section 3). A GUID in infra/app/rbac.bicep that is
# not here is a typo or an unreviewed role.
BUILT_IN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Reader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "Azure Service Bus Data Sender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "Azure Service Bus Data Receiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "Azure Service Bus Data Owner": "090c5cfd-751d-490a-894a-3ce6f1109419",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "Container Registry Repository Reader": "b93aa761-3e63-49ed-ac28-beffa264f7ac",
}

# AVM modules (registry path -> the resource type they deploy) and the versions the reference samples pin.
AVM_MODULES = {
    "avm/res/managed-identity/user-assigned-identity": ("Microsoft.ManagedIdentity/userAssignedIdentities", "0.4.1"),
    "avm/res/web/serverfarm": ("Microsoft.Web/serverfarms", "0.1.1"),
    "avm/res/web/site": ("Microsoft.Web/sites", "0.15.1"),
    "avm/res/storage/storage-account": ("Microsoft.Storage/storageAccounts", "0.8.3"),
    "avm/res/operational-insights/workspace": ("Microsoft.OperationalInsights/workspaces", "0.11.1"),
    "avm/res/insights/component": ("Microsoft.Insights/components", "0.6.0"),
}

ACR_EVENT_TYPES = {
    "Microsoft.ContainerRegistry.ImagePushed",
    "Microsoft.ContainerRegistry.ImageDeleted",
    "Microsoft.ContainerRegistry.ChartPushed",
    "Microsoft.ContainerRegistry.ChartDeleted",
}


# -- parsing helpers ---------------------------------------------------------------------------------


@cache
def bicep(relative: str) -> dict[str, Any]:
    """The pycep document of infra/<relative>, with every section present."""
    doc = BicepParser().parse(file_path=INFRA / relative)
    return {
        key: doc.get(key) or {} for key in ("globals", "parameters", "variables", "resources", "modules", "outputs")
    }


def text(relative: str) -> str:
    return (INFRA / relative).read_text()


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own properties, under a loop or a condition or not."""
    config = resource["config"]
    while isinstance(config, dict) and ("loop_type" in config or "condition" in config) and "config" in config:
        config = config["config"]
    return config


def condition(resource: dict[str, Any]) -> Any:
    return resource["config"].get("condition")


def dotted(expr: Any) -> str:
    """Render a property-access chain (``a.b.c``) as text; other values as their str()."""
    if isinstance(expr, dict) and "operator" in expr and expr["operator"]["type"] == "property_accessor":
        operands = expr["operator"]["operands"]
        return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"
    if isinstance(expr, dict) and "operator" in expr and expr["operator"]["type"] == "index_accessor":
        operands = expr["operator"]["operands"]
        return f"{dotted(operands['operand_1'])}[{dotted(operands['operand_2'])}]"
    return str(expr)


def resources_of_type(relative: str, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: res
        for name, res in bicep(relative)["resources"].items()
        if res["type"] == resource_type and not res["existing"]
    }


def avm_modules(relative: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Modules from the public registry: symbol -> (path, version, params)."""
    found = {}
    for name, module in bicep(relative)["modules"].items():
        if module["type"] != "local":
            detail = module["detail"]
            assert detail.get("public") and detail["alias"] == "public", f"{relative}:{name}: not br/public"
            found[name] = (detail["path"], detail.get("tag", ""), body(module).get("params", {}))
    return found


def avm_params(relative: str, path: str) -> dict[str, Any]:
    (params,) = [params for p, _, params in avm_modules(relative).values() if p == path]
    return params


def main_variable(name: str) -> Any:
    return bicep("main.bicep")["variables"][name]["value"]


def resolve_main(value: str) -> str:
    """Substitute main.bicep's plain string variables into an interpolated string."""
    return re.sub(r"\$\{(\w+)\}", lambda m: str(main_variable(m.group(1))), value)


def deployed_types() -> set[str]:
    types = set()
    for path in BICEP_FILES:
        doc = bicep(str(path.relative_to(INFRA)))
        types |= {res["type"] for res in doc["resources"].values() if not res["existing"]}
        for module in doc["modules"].values():
            if module["type"] != "local":
                types.add(AVM_MODULES[module["detail"]["path"]][0])
    return types


# -- every file parses; modules resolve -------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses_with_pycep(path: Path) -> None:
    doc = bicep(str(path.relative_to(INFRA)))
    assert doc["resources"] or doc["modules"], f"{path.name} declares nothing"


def test_local_modules_exist_and_every_module_file_is_used() -> None:
    used = set()
    for path in BICEP_FILES:
        for module in bicep(str(path.relative_to(INFRA)))["modules"].values():
            if module["type"] == "local":
                target = (path.parent / module["detail"]["path"]).resolve()
                assert target.is_file(), f"{path.name} uses a missing module {module['detail']['path']}"
                used.add(target)
    app_files = {p.resolve() for p in (INFRA / "app").glob("*.bicep")}
    assert app_files <= used, f"unused modules: {sorted(p.name for p in app_files - used)}"


def test_avm_modules_are_known_and_pinned() -> None:
    for path in BICEP_FILES:
        for name, (module_path, version, _) in avm_modules(str(path.relative_to(INFRA))).items():
            assert module_path in AVM_MODULES, f"{path.name}:{name} uses an unreviewed AVM module {module_path}"
            assert version == AVM_MODULES[module_path][1], f"{name}: {module_path} pinned at {version}"


def test_abbreviations_used_by_main_exist() -> None:
    abbreviations = json.loads(text("abbreviations.json"))
    used = set(re.findall(r"abbrs\.(\w+)", text("main.bicep")))
    assert used and used <= set(abbreviations), f"missing abbreviations: {used - set(abbreviations)}"


# -- resources -------------------------------------------------------------------------------------


def test_the_deployment_has_every_resource_acrsync_needs() -> None:
    assert deployed_types() >= {
        "Microsoft.Resources/resourceGroups",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/tableServices/tables",
        "Microsoft.ServiceBus/namespaces",
        "Microsoft.ServiceBus/namespaces/queues",
        "Microsoft.EventGrid/systemTopics",
        "Microsoft.EventGrid/systemTopics/eventSubscriptions",
        "Microsoft.EventGrid/topics",
        "Microsoft.KeyVault/vaults",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.Insights/components",
        "Microsoft.Insights/workbooks",
        "Microsoft.Insights/metricAlerts",
        "Microsoft.Authorization/roleAssignments",
    }


def test_main_is_subscription_scoped_with_an_azd_tagged_resource_group() -> None:
    doc = bicep("main.bicep")
    assert doc["globals"]["scope"]["value"] == "subscription"
    (rg,) = resources_of_type("main.bicep", "Microsoft.Resources/resourceGroups").values()
    assert body(rg)["tags"] == "tags"
    assert main_variable("tags") == {"'azd-env-name'": "environmentName"}
    assert "uniqueString(subscription().id, environmentName, location)" in text("main.bicep")


def test_the_registry_is_existing_and_may_live_in_another_resource_group() -> None:
    acr = bicep("main.bicep")["resources"]["acr"]
    assert acr["existing"] and acr["type"] == "Microsoft.ContainerRegistry/registries"
    scope = body(acr)["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert dotted(scope["parameters"]["subscription_id"]) == "acrSubscriptionId"
    assert dotted(scope["parameters"]["resource_group_name"]) == "acrResourceGroupName"


def test_storage_allows_no_shared_keys_and_holds_the_containers() -> None:
    params = avm_params("app/storage.bicep", "avm/res/storage/storage-account")
    assert params["allowSharedKeyAccess"] is False
    assert params["allowBlobPublicAccess"] is False
    assert params["minimumTlsVersion"] == "TLS1_2"
    containers = [c["name"] for c in params["blobServices"]["containers"]]
    assert containers == ["deploymentContainerName", "deadLetterContainerName"]

    storage_module = body(bicep("main.bicep")["modules"]["storage"])["params"]
    assert storage_module["deadLetterContainerName"] == "deadLetterContainerName"
    assert main_variable("deadLetterContainerName") == "eg-deadletter"
    assert storage_module["deploymentContainerName"] == "deploymentContainerName"
    assert not resources_of_type("app/storage.bicep", "Microsoft.Storage/storageAccounts/tableServices/tables")


def test_the_tables_live_in_an_account_of_their_own_without_shared_keys() -> None:
    params = avm_params("app/state-storage.bicep", "avm/res/storage/storage-account")
    assert params["allowSharedKeyAccess"] is False and params["allowBlobPublicAccess"] is False
    assert params["minimumTlsVersion"] == "TLS1_2"
    assert "blobServices" not in params and "queueServices" not in params and "fileServices" not in params
    (tables,) = resources_of_type(
        "app/state-storage.bicep", "Microsoft.Storage/storageAccounts/tableServices/tables"
    ).values()
    assert tables["config"]["loop_type"]["detail"]["array_name"] == "tableNames"
    assert body(tables)["name"] == "${name}/default/${table}"
    # Its own name, not the host storage account's, and the app reads its tables there.
    assert "state" in main_variable("stateStName")["operator"]["operands"]["true_value"]
    api = body(bicep("main.bicep")["modules"]["api"])["params"]
    assert dotted(api["tableEndpoint"]) == "stateStorage.outputs.tableEndpoint"
    assert "output SYNC_TABLE_ENDPOINT string = stateStorage.outputs.tableEndpoint" in text("main.bicep")


def test_the_tables_are_the_ones_the_store_uses() -> None:
    expected = set(_table_names(shared.config.DEFAULT_TABLE_PREFIX).values())
    assert {resolve_main(name) for name in main_variable("tableNames")} == expected
    assert body(bicep("main.bicep")["modules"]["stateStorage"])["params"]["tableNames"] == "tableNames"


def test_service_bus_has_no_local_auth_and_the_queue_matches_the_worker() -> None:
    (namespace,) = resources_of_type("app/messaging.bicep", "Microsoft.ServiceBus/namespaces").values()
    assert body(namespace)["properties"]["disableLocalAuth"] is True
    assert body(namespace)["properties"]["minimumTlsVersion"] == "1.2"

    (queue,) = resources_of_type("app/messaging.bicep", "Microsoft.ServiceBus/namespaces/queues").values()
    assert body(queue)["properties"] == {
        "requiresSession": True,  # session id = site (orchestrations/site_sync.py is_sessions_enabled=True)
        "requiresDuplicateDetection": True,
        "duplicateDetectionHistoryTimeWindow": "PT10M",
        "lockDuration": "PT1M",
        "maxDeliveryCount": 10,
        "deadLetteringOnMessageExpiration": True,
        "defaultMessageTimeToLive": "P14D",
        "enablePartitioning": False,
    }
    assert main_variable("syncQueueName") == shared.config.DEFAULT_QUEUE


def test_service_bus_sku_is_standard_or_premium() -> None:
    param = bicep("main.bicep")["parameters"]["serviceBusSku"]
    assert param["default"] == "Standard"
    (allowed,) = [d["argument"] for d in param["decorators"] if d["type"] == "allowed"]
    assert allowed == ["Standard", "Premium"]


def test_event_grid_topics() -> None:
    (system_topic,) = resources_of_type("app/eventgrid.bicep", "Microsoft.EventGrid/systemTopics").values()
    assert body(system_topic)["properties"] == {
        "source": "registryId",
        "topicType": "Microsoft.ContainerRegistry.Registries",
    }
    assert body(system_topic)["identity"] == {"type": "SystemAssigned"}
    assert body(system_topic)["location"] == "registryLocation"
    event_grid = body(bicep("main.bicep")["modules"]["eventGrid"])["params"]
    assert dotted(event_grid["registryLocation"]) == "acr.location"  # a system topic lives in its source's region
    assert dotted(event_grid["registryId"]) == "acr.id"

    (custom_topic,) = resources_of_type("app/eventgrid.bicep", "Microsoft.EventGrid/topics").values()
    assert body(custom_topic)["properties"]["inputSchema"] == "CloudEventSchemaV1_0"
    assert body(custom_topic)["properties"]["disableLocalAuth"] is True


def test_key_vault_uses_rbac_and_app_insights_has_no_local_auth() -> None:
    (vault,) = resources_of_type("app/keyvault.bicep", "Microsoft.KeyVault/vaults").values()
    assert body(vault)["properties"]["enableRbacAuthorization"] is True

    insights = avm_params("app/monitoring.bicep", "avm/res/insights/component")
    assert insights["disableLocalAuth"] is True
    assert dotted(insights["workspaceResourceId"]) == "logAnalytics.outputs.resourceId"


def test_function_app_is_python_311_on_flex_consumption_with_a_user_assigned_identity() -> None:
    plan = avm_params("main.bicep", "avm/res/web/serverfarm")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["reserved"] is True

    site = avm_params("app/function.bicep", "avm/res/web/site")
    assert site["kind"] == "functionapp,linux"
    config = site["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["value"] == "${blobEndpoint}${deploymentContainerName}"
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert site["managedIdentities"]["userAssignedResourceIds"] == ["identityId"]
    assert site["appSettingsKeyValuePairs"] == "appSettings"

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires  # the runtime the deployment asks for is one the project supports


# -- no secrets ------------------------------------------------------------------------------------


def test_no_keys_or_connection_strings_anywhere_in_the_deployment() -> None:
    files = [p for p in INFRA.rglob("*") if p.is_file()] + [ROOT / "azure.yaml", *ROOT.glob("scripts/postdeploy.*")]
    forbidden = re.compile(r"listKeys|listConnectionStrings|AccountKey=|SharedAccessKey|primaryKey|@secure", re.I)
    offenders = {str(p.relative_to(ROOT)): forbidden.findall(p.read_text()) for p in files}
    assert not {path: hits for path, hits in offenders.items() if hits}


# -- app settings <-> shared/config.py --------------------------------------------------------------

SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# Settings the code reads that Bicep must not set. Each one says why.
LOCAL_ONLY = {
    "ACRSYNC_DATA_DIR",  # the embedded SQLite store and queue: laptops and tests only
    "SYNC_TABLE_CONNECTION",  # a Table Storage connection string (Azurite); Azure uses SYNC_TABLE_ENDPOINT
    "ServiceBusConnection",  # a Service Bus connection string; Azure uses the identity-based __ settings
    "SYNC_TABLE_PREFIX",  # Azure uses the default prefix, which names the tables Bicep creates
    "SYNC_QUEUE_MAX_BATCH_BYTES",  # the SDK learns the namespace's limit from the link
    "ACRSYNC_ARM_ENDPOINT",  # sovereign clouds only; public Azure is the default
    "ACRSYNC_TOKEN_EXPIRY_HORIZON_DAYS",  # optional: the default horizon (30 days) applies unless an operator sets it
    "ACRSYNC_SITE_CREDENTIALS",  # secret: in Azure a Key Vault reference added by the operator (README)
    "ACRSYNC_SIGNING_KEY",  # secret: in Azure a Key Vault reference added by the operator (README)
    "ACRSYNC_REPORT_SECRET",  # secret: in Azure a Key Vault reference added by the operator (README)
    "ACRSYNC_OUTDATED_AFTER_HOURS",  # optional: the default policy (24 hours) applies unless an operator sets it
    "ACRSYNC_API_KEY",  # the local runtime's API key; Azure uses function keys (AuthLevel.FUNCTION)
}
# Settings the code reads that the platform sets on every Functions host.
PLATFORM_PROVIDED = {
    "WEBSITE_SITE_NAME",  # App Service sets it; shared/config.py uses it to tell Azure from a laptop
    "WEBSITE_AUTH_ENABLED",  # App Service sets it when App Service Authentication runs in front of the app
}


def code_settings() -> dict[str, str]:
    """Every setting name in shared/config.py: module-level UPPER_CASE str constants whose value looks like a
    setting name (so DEFAULT_QUEUE = 'site-sync' and DEFAULT_TABLE_PREFIX = 'acrsync' are not settings)."""
    return {
        name: value
        for name, value in vars(shared.config).items()
        if name.isupper()
        and not name.startswith("_")
        and type(value) is str
        and SETTING_NAME.fullmatch(value)
        and any(c.isupper() for c in value)
    }


def bicep_settings() -> set[str]:
    # pycep parses function.bicep, so the names come from the parsed `appSettings` object; the regex
    # fallback below (over the var block's text) exists only for the day the parser cannot read the file.
    try:
        settings = bicep("app/function.bicep")["variables"]["appSettings"]["value"]
        return set(settings)
    except Exception:  # pragma: no cover - parser regression
        block = re.search(r"var appSettings = \{(.*?)\n\}", text("app/function.bicep"), re.S)
        assert block, "no appSettings block in infra/app/function.bicep"
        return set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", block.group(1), re.M))


def is_platform_setting(name: str) -> bool:
    """Settings the Functions host or the Azure SDKs read, not acrsync's code."""
    if name.startswith(("AzureWebJobsStorage__", "APPLICATIONINSIGHTS_")):
        return True  # host storage through the identity; telemetry (the exporter reads both)
    connection, _, suffix = name.rpartition("__")
    # <Connection>__credential / __clientId complete an identity-based connection the code names.
    return suffix in {"credential", "clientId"} and connection in set(code_settings().values())


def test_every_setting_in_shared_config_is_classified() -> None:
    unclassified = set(code_settings().values()) - bicep_settings() - LOCAL_ONLY - PLATFORM_PROVIDED
    assert not unclassified, (
        f"{sorted(unclassified)} are read by the code but neither set by infra/app/function.bicep nor listed "
        "as local-only or platform-provided in tests/unit/test_infra.py: classify them"
    )


def test_a_new_setting_in_shared_config_must_be_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.config, "SOMETHING_NEW", "ACRSYNC_SOMETHING_NEW", raising=False)
    monkeypatch.setattr(shared.config, "NOT_A_SETTING", "site-sync", raising=False)
    assert "ACRSYNC_SOMETHING_NEW" in code_settings().values()
    assert "site-sync" not in code_settings().values()
    with pytest.raises(AssertionError, match="classify them"):
        test_every_setting_in_shared_config_is_classified()


def test_bicep_sets_every_setting_azure_needs_and_no_local_one() -> None:
    settings = bicep_settings()
    needed = set(code_settings().values()) - LOCAL_ONLY - PLATFORM_PROVIDED
    assert needed <= settings, f"missing in infra/app/function.bicep: {sorted(needed - settings)}"
    assert not (settings & LOCAL_ONLY), f"local-only settings in Azure: {sorted(settings & LOCAL_ONLY)}"
    assert azure_monitor.CONNECTION_STRING_SETTING in settings


def test_every_setting_bicep_sets_is_read_by_the_code_or_the_platform() -> None:
    known = set(code_settings().values())
    stray = {name for name in bicep_settings() if name not in known and not is_platform_setting(name)}
    assert not stray, f"infra/app/function.bicep sets settings nothing reads: {sorted(stray)}"


def test_app_settings_are_identity_based() -> None:
    settings = bicep("app/function.bicep")["variables"]["appSettings"]["value"]
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["ServiceBusConnection__credential"] == "managedidentity"
    for name in ("AzureWebJobsStorage__clientId", "ServiceBusConnection__clientId", "AZURE_CLIENT_ID"):
        assert settings[name] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert "AzureWebJobsStorage" not in settings and "ServiceBusConnection" not in settings
    assert {"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__queueServiceUri"} <= set(settings)


def test_the_queue_setting_is_the_one_the_triggers_read() -> None:
    site_sync = (ROOT / "orchestrations" / "site_sync.py").read_text()
    assert f'queue_name="%{shared.config.SYNC_QUEUE}%"' in site_sync
    assert 'connection="ServiceBusConnection"' in site_sync
    assert bicep("app/function.bicep")["variables"]["appSettings"]["value"]["SYNC_QUEUE"] == "syncQueueName"


# -- role assignments -------------------------------------------------------------------------------


def role_table() -> dict[str, str]:
    return bicep("app/rbac.bicep")["variables"]["roles"]["value"]


def test_each_role_guid_is_a_built_in_role_named_in_its_comment() -> None:
    by_guid = {guid: name for name, guid in BUILT_IN_ROLES.items()}
    rbac_lines = text("app/rbac.bicep").splitlines()
    for key, guid in role_table().items():
        assert guid in by_guid, f"roles.{key} = {guid} is not a reviewed built-in role"
        (line,) = [line for line in rbac_lines if guid in line]
        assert line.rstrip().endswith(f"// {by_guid[guid]}"), f"roles.{key}: the comment must name {by_guid[guid]!r}"


def test_role_guids_are_written_only_in_the_role_table() -> None:
    table_lines = {line for line in text("app/rbac.bicep").splitlines() if GUID.search(line) and "//" in line}
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            if GUID.search(line):
                assert line in table_lines, f"{path.relative_to(ROOT)}: a GUID outside the role table: {line.strip()}"


def role_assignments() -> list[tuple[str, str, dict[str, Any], Any]]:
    """(file, symbol, body, condition) for every role assignment in infra/."""
    found = []
    for path in BICEP_FILES:
        relative = str(path.relative_to(INFRA))
        for name, res in resources_of_type(relative, "Microsoft.Authorization/roleAssignments").items():
            found.append((relative, name, body(res), condition(res)))
    return found


def role_of(assignment: dict[str, Any]) -> str:
    """The roles.<key> (or the param) a role assignment's roleDefinitionId is built from."""
    function = assignment["properties"]["roleDefinitionId"]["function"]
    assert function["type"] == "subscription_resource_id"
    assert function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    return dotted(function["parameters"]["resource_name_1"])


def test_every_role_definition_comes_from_the_role_table() -> None:
    keys = {f"roles.{key}" for key in role_table()}
    for relative, name, assignment, _ in role_assignments():
        role = role_of(assignment)
        if relative in PASSED_ROLE_FILES:
            assert role == "roleId"  # passed in from the table, below
        else:
            assert role in keys, f"{relative}:{name} uses {role}"
        guid_args = assignment["name"]["function"]["parameters"]
        assert assignment["name"]["function"]["type"] == "guid"
        # An assignment without a scope is on the resource group its module is deployed to.
        scope = f"{dotted(assignment['scope'])}.id" if "scope" in assignment else "resource_group().id"
        assert _id_of(guid_args["base_string"]) == scope, f"{name}: guid(scope.id, ...)"
        assert dotted(guid_args["extra_string_2"]) == role
        assert dotted(guid_args["extra_string_1"]) == assignment["properties"]["principalId"]
    modules = bicep("app/rbac.bicep")["modules"]
    for module, role in MODULE_ROLES.items():
        assert dotted(body(modules[module])["params"]["roleId"]) == role, module


# Role assignments deployed elsewhere (another resource group or subscription) by rbac.bicep's modules,
# with the role passed in from its table: the file, the module that deploys it, its role and scope.
PASSED_ROLE_FILES = {
    "app/rbac-registry.bicep": "registry",
    "app/rbac-clusters.bicep": "clustersResourceGroup",
    "app/rbac-workspace.bicep": "workspace",
}
MODULE_ROLES = {
    "registryReader": "roles.reader",
    "registryPuller": "roles.acrPull",
    "clustersReader": "roles.reader",
    "workspaceReader": "roles.logAnalyticsReader",
}
MODULES_OF_FILE = {
    "app/rbac-registry.bicep": ("registryReader", "registryPuller"),
    "app/rbac-clusters.bicep": ("clustersReader",),
    "app/rbac-workspace.bicep": ("workspaceReader",),
}


def _id_of(node: Any) -> str:
    """``x.id`` for a property access, ``resource_group().id`` for the function call's."""
    text = str(dotted(node))
    if "'type': 'resource_group'" in text and text.endswith(".id"):
        return "resource_group().id"
    return text


def test_the_app_and_the_system_topic_get_exactly_the_roles_they_need() -> None:
    granted = set()
    for relative, name, assignment, cond in role_assignments():
        principal = assignment["properties"]["principalId"]
        if cond is not None:
            assert principal == "developerPrincipalId" and cond == "withDeveloper", f"{name}: unexpected condition"
            assert "principalType" not in assignment["properties"]  # a user locally, a service principal in CI
            continue
        assert assignment["properties"]["principalType"] == "ServicePrincipal", name
        if relative in PASSED_ROLE_FILES:
            for module in MODULES_OF_FILE[relative]:
                granted.add((principal, MODULE_ROLES[module], PASSED_ROLE_FILES[relative]))
        else:
            granted.add((principal, role_of(assignment), dotted(assignment["scope"])))
    assert granted == {
        ("appPrincipalId", "roles.storageBlobDataOwner", "storage"),
        ("appPrincipalId", "roles.storageTableDataContributor", "stateStorage"),
        ("appPrincipalId", "roles.serviceBusDataSender", "syncQueue"),
        ("appPrincipalId", "roles.serviceBusDataReceiver", "syncQueue"),
        ("appPrincipalId", "roles.eventGridDataSender", "eventsTopic"),
        ("appPrincipalId", "roles.keyVaultSecretsUser", "vault"),
        ("appPrincipalId", "roles.monitoringMetricsPublisher", "applicationInsights"),
        ("principalId", "roles.reader", "registry"),  # rbac-registry.bicep, principalId = appPrincipalId
        ("principalId", "roles.acrPull", "registry"),  # the same file again: release manifests (their sizes)
        ("principalId", "roles.reader", "clustersResourceGroup"),  # rbac-clusters.bicep: the sites' Arc clusters
        ("principalId", "roles.logAnalyticsReader", "workspace"),  # rbac-workspace.bicep: their Container Insights
        ("systemTopicPrincipalId", "roles.storageBlobDataContributor", "storage"),
    }
    for module in MODULE_ROLES:
        deployed = body(bicep("app/rbac.bicep")["modules"][module])
        assert deployed["params"]["principalId"] == "appPrincipalId", module
        assert deployed["scope"]["function"]["type"] == "resource_group", module  # deployed into that group


def test_the_table_role_is_on_the_account_that_holds_only_acrsyncs_tables() -> None:
    # Entity-group transactions go to the account-level /$batch URL: a role on each table may not cover them.
    resources = bicep("app/rbac.bicep")["resources"]
    for name in ("appTables", "developerTables"):
        assert dotted(body(resources[name])["scope"]) == "stateStorage", name
        assert "loop_type" not in resources[name]["config"]
    state = resources["stateStorage"]
    assert state["existing"] and body(bicep("main.bicep")["modules"]["rbac"])["params"]["stateStorageAccountName"]


def test_developer_roles_are_behind_a_flag() -> None:
    main = bicep("main.bicep")
    assert main["parameters"]["assignDeveloperRoles"]["type"] == "bool"
    rbac_params = body(main["modules"]["rbac"])["params"]
    conditional = rbac_params["developerPrincipalId"]["operator"]
    assert conditional["type"] == "conditional"
    assert conditional["operands"] == {
        "condition": "assignDeveloperRoles",
        "true_value": "principalId",
        "false_value": "",
    }
    assert "var withDeveloper = !empty(developerPrincipalId)" in text("app/rbac.bicep")


# -- parameters and outputs -------------------------------------------------------------------------


# Optional parameters azd fills from the environment, with azd's ${NAME=default} when the value is unset.
OPTIONAL_FROM_AZD_ENV = {
    "enableAppServiceAuth": "${ENABLE_APP_SERVICE_AUTH=false}",
    "authClientId": "${AUTH_CLIENT_ID=}",
    "siteClustersResourceGroupId": "${SITE_CLUSTERS_RESOURCE_GROUP_ID=}",
    "containerInsightsWorkspaceId": "${CONTAINER_INSIGHTS_WORKSPACE_ID=}",
}


def test_parameters_file_maps_the_required_params_and_the_auth_option() -> None:
    parameters = json.loads(text("main.parameters.json"))["parameters"]
    params = bicep("main.bicep")["parameters"]
    required = {name for name, param in params.items() if param["default"] is None}
    assert set(parameters) == required | set(OPTIONAL_FROM_AZD_ENV)
    assert set(parameters) <= set(params)
    assert {name: p["value"] for name, p in parameters.items()} == {
        "environmentName": "${AZURE_ENV_NAME}",
        "location": "${AZURE_LOCATION}",
        "principalId": "${AZURE_PRINCIPAL_ID}",
        "acrResourceId": "${ACR_RESOURCE_ID}",
        **OPTIONAL_FROM_AZD_ENV,
    }


def test_every_main_param_is_described() -> None:
    for name, param in bicep("main.bicep")["parameters"].items():
        assert any(d["type"] == "description" for d in param["decorators"]), f"main.bicep: {name}"


def outputs() -> set[str]:
    return set(bicep("main.bicep")["outputs"])


def test_outputs_are_upper_snake_and_include_the_azd_conventions() -> None:
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs())
    assert outputs() >= {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_FUNCTION_APP_NAME",
        "RESOURCE_GROUP",
        "SERVICE_API_BASE_URL",
        "SERVICEBUS_FQDN",
        "SYNC_TABLE_ENDPOINT",
        "EVENTS_TOPIC_ENDPOINT",
        "ACR_SYSTEM_TOPIC_NAME",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    }


# Values azd itself puts in every environment (not outputs of main.bicep).
AZD_BUILT_INS = {"AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"}


def test_outputs_the_hooks_read_exist() -> None:
    sh = set(re.findall(r"\$\(value (\w+)\)", (ROOT / "scripts" / "postdeploy.sh").read_text()))
    ps1 = set(re.findall(r"Get-AzdValue '(\w+)'", (ROOT / "scripts" / "postdeploy.ps1").read_text()))
    assert sh and sh == ps1
    assert sh - AZD_BUILT_INS <= outputs(), (
        f"hooks read values main.bicep does not output: {sh - AZD_BUILT_INS - outputs()}"
    )


def test_outputs_the_readme_uses_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r"azd env get-value (\w+)", readme))
    assert used, "the README's deploy section reads no azd values"
    assert used - AZD_BUILT_INS <= outputs(), f"README reads values main.bicep does not output: {used - outputs()}"
    assert "azd env set ACR_RESOURCE_ID" in readme


# -- azure.yaml and the hooks -----------------------------------------------------------------------


def test_azure_yaml_declares_the_function_service_the_bicep_tags() -> None:
    raw = (ROOT / "azure.yaml").read_text()
    assert raw.splitlines()[0].startswith("# yaml-language-server: $schema=")
    project = yaml.safe_load(raw)
    assert set(project["services"]) == {"api"}
    assert project["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    assert main_variable("serviceName") == "api"
    tags = body(bicep("main.bicep")["modules"]["api"])["params"]["tags"]["function"]
    assert tags["type"] == "union" and tags["parameters"]["arg_2"] == {"'azd-service-name'": "serviceName"}
    assert avm_params("app/function.bicep", "avm/res/web/site")["tags"] == "tags"


def test_azure_yaml_runs_the_postdeploy_hooks() -> None:
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]["postdeploy"]
    assert hooks["posix"]["run"] == "./scripts/postdeploy.sh"
    assert hooks["windows"] == {"shell": "pwsh", "run": "./scripts/postdeploy.ps1", "continueOnError": False}
    script = ROOT / "scripts" / "postdeploy.sh"
    assert os.access(script, os.X_OK), "azd runs the posix hook directly: it must be executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()


def hook_params() -> dict[str, Any]:
    return bicep("hooks/eventgrid-subscription.bicep")["parameters"]


def test_both_hook_scripts_pass_what_the_subscription_template_needs() -> None:
    sh = (ROOT / "scripts" / "postdeploy.sh").read_text()
    ps1 = (ROOT / "scripts" / "postdeploy.ps1").read_text()
    # name="$value" continuation lines (bash) and "name=$value" arguments (PowerShell)
    for script, pattern in ((sh, r'^\s+(\w+)="\$'), (ps1, r'^\s+"(\w+)=\$')):
        assert "--template-file infra/hooks/eventgrid-subscription.bicep" in script
        passed = set(re.findall(pattern, script, re.M))
        required = {name for name, param in hook_params().items() if param["default"] is None}
        assert required <= passed, f"not passed: {required - passed}"
        assert passed <= set(hook_params()), f"unknown parameters: {passed - set(hook_params())}"


def test_event_grid_subscription_targets_on_acr_event_with_the_four_acr_event_types() -> None:
    from orchestrations.acr_events import FUNCTION_NAME

    (subscription,) = resources_of_type(
        "hooks/eventgrid-subscription.bicep", "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    ).values()
    properties = body(subscription)["properties"]
    assert set(properties["filter"]["includedEventTypes"]) == ACR_EVENT_TYPES
    assert len(properties["filter"]["includedEventTypes"]) == 4
    assert properties["destination"]["endpointType"] == "AzureFunction"
    assert properties["destination"]["properties"]["resourceId"] == "${functionApp.id}/functions/${functionName}"
    assert hook_params()["functionName"]["default"] == FUNCTION_NAME == "on_acr_event"
    assert properties["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"
    assert hook_params()["deadLetterContainerName"]["default"] == main_variable("deadLetterContainerName")


def test_postdeploy_sh_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed here (apt-get install shellcheck); .ci/run installs it in CI")
    result = subprocess.run(
        [shellcheck, "--shell=bash", "scripts/postdeploy.sh"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


STUB = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >> "$STUB_LOG"
case "$*" in
  "env get-value"*) exit 1 ;;
esac
exit 0
"""

HOOK_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "RESOURCE_GROUP": "rg-dev",
    "AZURE_FUNCTION_APP_NAME": "func-abc",
    "ACR_SYSTEM_TOPIC_NAME": "evgst-acr-abc",
    "AZURE_STORAGE_ACCOUNT_NAME": "stabc",
    "EG_DEADLETTER_CONTAINER": "eg-deadletter",
}


def _run_hook(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("az", "azd"):
        stub = bin_dir / tool
        stub.write_text(STUB)
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postdeploy.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result, log.read_text().splitlines()


def test_postdeploy_sh_deploys_the_subscription_template_with_the_azd_values(tmp_path: Path) -> None:
    result, calls = _run_hook(tmp_path, HOOK_ENV)
    assert result.returncode == 0, result.stderr
    (deployment,) = [c for c in calls if c.startswith("az deployment group create")]
    assert "--template-file infra/hooks/eventgrid-subscription.bicep" in deployment
    assert "--resource-group rg-dev" in deployment
    assert "--subscription 00000000-0000-0000-0000-000000000001" in deployment
    for expected in (
        "systemTopicName=evgst-acr-abc",
        "functionAppName=func-abc",
        "storageAccountName=stabc",
        "deadLetterContainerName=eg-deadletter",
        "functionName=on_acr_event",
    ):
        assert expected in deployment
    # it waited for the function to be indexed before subscribing
    show = calls.index(next(c for c in calls if c.startswith("az functionapp function show")))
    assert show < calls.index(deployment)


def test_postdeploy_sh_names_a_missing_azd_value_and_deploys_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in HOOK_ENV.items() if k != "ACR_SYSTEM_TOPIC_NAME"}
    result, calls = _run_hook(tmp_path, env)
    assert result.returncode != 0
    assert "ACR_SYSTEM_TOPIC_NAME is not set" in result.stderr
    assert not [c for c in calls if c.startswith("az deployment")]


def test_ci_installs_shellcheck() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "shellcheck" in ci


# -- observability: workbook and alerts -------------------------------------------------------------


def test_workbook_is_a_shared_workbook_named_by_a_guid_with_its_placeholders_filled() -> None:
    (workbook,) = resources_of_type("app/dashboards.bicep", "Microsoft.Insights/workbooks").values()
    config = body(workbook)
    assert config["name"]["function"]["type"] == "guid"
    assert config["kind"] == "shared"
    assert config["properties"]["category"] == "workbook"
    assert config["properties"]["sourceId"] == "applicationInsightsId"
    assert "loadTextContent('../workbook.json')" in text("app/dashboards.bicep")

    raw = text("workbook.json")
    document = json.loads(raw)
    assert document["version"] == "Notebook/1.0"
    placeholders = set(re.findall(r"__[A-Z_]+__", raw))
    replaced = set(re.findall(r"'(__[A-Z_]+__)'", text("app/dashboards.bicep")))
    assert placeholders and placeholders == replaced


def test_workbook_panels_read_what_the_app_emits() -> None:
    raw = text("workbook.json")
    queries = [item["content"].get("query", "") for item in json.loads(raw)["items"] if item["type"] == 3]
    everything = "\n".join(queries)
    assert "customDimensions.site" in everything and "customDimensions.release_id" in everything  # readiness grid
    assert 'message startswith "site check:"' in everything  # shared/services/site_check.py _log
    for name in (observability.LAG_SECONDS, observability.JOBS, observability.SITES_PENDING, observability.SITES_STALE):
        assert f'"{name}"' in everything, name
    assert "percentile(lag_s, 95)" in everything
    assert "DeadletteredMessages" in raw  # Service Bus dead letters
    assert "DeadLetteredCount" in raw and "DeliveryAttemptFailCount" in raw  # Event Grid delivery failures


def test_metric_alerts_cover_dead_letters_and_stale_sites() -> None:
    alerts = resources_of_type("app/dashboards.bicep", "Microsoft.Insights/metricAlerts")
    criteria = {}
    for alert in alerts.values():
        properties = body(alert)["properties"]
        (criterion,) = properties["criteria"]["allOf"]
        criteria[criterion["metricName"]] = (properties["scopes"], criterion)
    assert set(criteria) == {"DeadletteredMessages", observability.SITES_STALE, "DeadLetteredCount"}
    for _scopes, criterion in criteria.values():
        assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    assert criteria["DeadletteredMessages"][0] == ["serviceBusNamespaceId"]
    assert criteria[observability.SITES_STALE][0] == ["applicationInsightsId"]
    assert criteria[observability.SITES_STALE][1]["metricNamespace"] == "azure.applicationinsights"
    assert criteria["DeadLetteredCount"][0] == ["systemTopicId"]


def test_readme_says_what_was_validated_offline() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy to Azure", 1)[1].split("\n## ", 1)[0]
    for phrase in ("azd up", "azd down --purge", "postdeploy", "acrsync sites import", "/readiness", "offline"):
        assert phrase in section, phrase


# -- App Service Authentication (optional) ------------------------------------------------------------


def test_app_service_authentication_is_an_option_with_entra_id_and_the_app_roles() -> None:
    main = bicep("main.bicep")
    assert main["parameters"]["enableAppServiceAuth"]["type"] == "bool"
    assert main["parameters"]["enableAppServiceAuth"]["default"] is False
    api = body(main["modules"]["api"])["params"]
    assert (api["enableAppServiceAuth"], api["authClientId"]) == ("enableAppServiceAuth", "authClientId")

    (auth,) = resources_of_type("app/function.bicep", "Microsoft.Web/sites/config").values()
    assert condition(auth) == "enableAppServiceAuth"
    settings = body(auth)
    assert settings["name"] == "authsettingsV2"
    properties = settings["properties"]
    assert properties["platform"]["enabled"] is True
    validation = properties["globalValidation"]
    assert validation["requireAuthentication"] is True and validation["unauthenticatedClientAction"] == "Return401"
    entra = properties["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True and entra["registration"]["clientId"] == "authClientId"
    # acrsync then requires the roles the platform vouches for.
    app_settings = bicep("app/function.bicep")["variables"]["appSettings"]["value"]
    flag = app_settings["ACRSYNC_REQUIRE_ROLES"]["operator"]
    assert flag["type"] == "conditional" and flag["operands"]["condition"] == "enableAppServiceAuth"


def test_the_paths_reached_without_a_token_are_exactly_the_apps_anonymous_ones() -> None:
    anonymous = set(bicep("app/function.bicep")["variables"]["anonymousPaths"]["value"])
    routes = re.findall(
        r'route="([^"]+)", methods=\w+, auth_level=func\.AuthLevel\.ANONYMOUS',
        (ROOT / "orchestrations" / "http.py").read_text(),
    )
    expected = {"/" + route.replace("/{*page}", "") for route in routes}
    assert expected == {"/api/healthz", "/api/openapi.json", "/api/docs", "/dashboard"}
    # The host's Event Grid webhook authenticates with its system key; Event Grid has no Entra token for it.
    assert anonymous == expected | {"/runtime/webhooks/eventgrid", "/dashboard/app.js", "/dashboard/app.css"}
