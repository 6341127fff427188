#!/bin/sh
# Writes local.settings.json so that `func start` runs this app against the resources
# `azd provision` just created, with every setting the app and its bindings read (the names of
# local.settings.sample.json, connections in their identity form) and the values the deployed
# app got. Only identity-based settings: locally the app signs in as you (az login / azd auth
# login) with the roles main.bicep granted to AZURE_PRINCIPAL_ID, so no client id is written, and
# budgets are never enforced from a developer's machine (CHARGEBACK_ENFORCEMENT off): suspending a
# team's subscription stays with the deployed app's identity and its custom role. It
# never reads or writes a key or a connection string.
set -eu

# Every output the app cannot run without; CHARGEBACK_METRIC_NAMESPACE may be empty (the
# reconciliation then compares every metric namespace).
missing=""
for name in EVENTHUB_FULLY_QUALIFIED_NAMESPACE EVENTHUB_NAME EVENTHUB_CONSUMER_GROUP \
    STORAGE_BLOB_ENDPOINT STORAGE_QUEUE_ENDPOINT STORAGE_TABLE_ENDPOINT \
    HOST_STORAGE_BLOB_ENDPOINT HOST_STORAGE_QUEUE_ENDPOINT HOST_STORAGE_TABLE_ENDPOINT \
    LOG_ANALYTICS_WORKSPACE_ID RECONCILE_SCHEDULE CHARGEBACK_RECONCILE_TOLERANCE_PERCENT \
    CHARGEBACK_RECONCILE_LAG_HOURS CHARGEBACK_FINAL_GRACE_DAYS CHARGEBACK_PRICE_SHEET \
    CHARGEBACK_COST_CENTERS CHARGEBACK_DOWNLOADS BUDGET_SCHEDULE CHARGEBACK_ARM_ENDPOINT \
    CHARGEBACK_MAX_SUSPENSIONS CHARGEBACK_PROVIDER_NAME CHARGEBACK_LLM_LOG_SCOPE; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        missing="$missing $name"
    fi
done
if [ -n "$missing" ]; then
    echo "postprovision: not set:$missing (run through azd, or export the main.bicep outputs)" >&2
    exit 1
fi

# A JSON string body: backslashes and double quotes escaped.
json() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

target="local.settings.json"
cat > "$target" <<JSON
{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage__blobServiceUri": "$(json "$HOST_STORAGE_BLOB_ENDPOINT")",
    "AzureWebJobsStorage__queueServiceUri": "$(json "$HOST_STORAGE_QUEUE_ENDPOINT")",
    "AzureWebJobsStorage__tableServiceUri": "$(json "$HOST_STORAGE_TABLE_ENDPOINT")",
    "EventHubConnection__fullyQualifiedNamespace": "$(json "$EVENTHUB_FULLY_QUALIFIED_NAMESPACE")",
    "EVENTHUB_NAME": "$(json "$EVENTHUB_NAME")",
    "EVENTHUB_CONSUMER_GROUP": "$(json "$EVENTHUB_CONSUMER_GROUP")",
    "ChargebackStorage__tableServiceUri": "$(json "$STORAGE_TABLE_ENDPOINT")",
    "ChargebackStorage__blobServiceUri": "$(json "$STORAGE_BLOB_ENDPOINT")",
    "ChargebackStorage__queueServiceUri": "$(json "$STORAGE_QUEUE_ENDPOINT")",
    "CHARGEBACK_LEDGER_TABLE": "usageledger",
    "CHARGEBACK_DEAD_LETTER_TABLE": "usagedeadletters",
    "CHARGEBACK_RECONCILIATION_TABLE": "usagereconciliation",
    "CHARGEBACK_REPORTS_CONTAINER": "reports",
    "CHARGEBACK_DEAD_LETTER_CONTAINER": "deadletters",
    "CHARGEBACK_REPORT_QUEUE": "report-jobs",
    "LOG_ANALYTICS_WORKSPACE_ID": "$(json "$LOG_ANALYTICS_WORKSPACE_ID")",
    "CHARGEBACK_METRIC_NAMESPACE": "$(json "${CHARGEBACK_METRIC_NAMESPACE:-}")",
    "CHARGEBACK_SUBSCRIPTION_DIMENSION": "Subscription ID",
    "RECONCILE_SCHEDULE": "$(json "$RECONCILE_SCHEDULE")",
    "CHARGEBACK_RECONCILE_TOLERANCE_PERCENT": "$(json "$CHARGEBACK_RECONCILE_TOLERANCE_PERCENT")",
    "CHARGEBACK_RECONCILE_LAG_HOURS": "$(json "$CHARGEBACK_RECONCILE_LAG_HOURS")",
    "CHARGEBACK_FINAL_GRACE_DAYS": "$(json "$CHARGEBACK_FINAL_GRACE_DAYS")",
    "CHARGEBACK_PRICE_SHEET": "$(json "$CHARGEBACK_PRICE_SHEET")",
    "CHARGEBACK_COST_CENTERS": "$(json "$CHARGEBACK_COST_CENTERS")",
    "CHARGEBACK_PROVIDER_NAME": "$(json "$CHARGEBACK_PROVIDER_NAME")",
    "CHARGEBACK_LLM_LOG_SCOPE": "$(json "$CHARGEBACK_LLM_LOG_SCOPE")",
    "CHARGEBACK_DOWNLOADS": "$(json "$CHARGEBACK_DOWNLOADS")",
    "CHARGEBACK_FINOPS_HUB_STORAGE": "$(json "${CHARGEBACK_FINOPS_HUB_STORAGE:-}")",
    "CHARGEBACK_FINOPS_HUB_SCOPE": "$(json "${CHARGEBACK_FINOPS_HUB_SCOPE:-}")",
    "CHARGEBACK_LINES_ENDPOINT": "$(json "${CHARGEBACK_LINES_ENDPOINT:-}")",
    "CHARGEBACK_LINES_RULE_ID": "$(json "${CHARGEBACK_LINES_RULE_ID:-}")",
    "CHARGEBACK_BUDGETS": "$(json "${CHARGEBACK_BUDGETS:-}")",
    "BUDGET_SCHEDULE": "$(json "$BUDGET_SCHEDULE")",
    "CHARGEBACK_BUDGET_TABLE": "budgetstate",
    "CHARGEBACK_ENFORCEMENT": "off",
    "CHARGEBACK_APIM_RESOURCE_ID": "$(json "${CHARGEBACK_APIM_RESOURCE_ID:-}")",
    "CHARGEBACK_ARM_ENDPOINT": "$(json "$CHARGEBACK_ARM_ENDPOINT")",
    "CHARGEBACK_MAX_SUSPENSIONS": "$(json "$CHARGEBACK_MAX_SUSPENSIONS")"
  }
}
JSON
echo "postprovision: wrote $target for the resources in ${AZURE_RESOURCE_GROUP:-this environment}"
