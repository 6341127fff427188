#!/bin/sh
# Writes local.settings.json so that `func start` runs this app against the resources
# `azd provision` just created. Only identity-based settings: locally the app signs in as you
# (az login / azd auth login) with the roles main.bicep granted to AZURE_PRINCIPAL_ID. It
# never reads or writes a key or a connection string.
set -eu

missing=""
for name in EVENTHUB_FULLY_QUALIFIED_NAMESPACE EVENTHUB_NAME EVENTHUB_CONSUMER_GROUP \
    STORAGE_BLOB_ENDPOINT STORAGE_TABLE_ENDPOINT \
    HOST_STORAGE_BLOB_ENDPOINT HOST_STORAGE_QUEUE_ENDPOINT HOST_STORAGE_TABLE_ENDPOINT \
    LOG_ANALYTICS_WORKSPACE_ID RECONCILE_SCHEDULE; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        missing="$missing $name"
    fi
done
if [ -n "$missing" ]; then
    echo "postprovision: not set:$missing (run through azd, or export the main.bicep outputs)" >&2
    exit 1
fi

target="local.settings.json"
cat > "$target" <<JSON
{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage__blobServiceUri": "$HOST_STORAGE_BLOB_ENDPOINT",
    "AzureWebJobsStorage__queueServiceUri": "$HOST_STORAGE_QUEUE_ENDPOINT",
    "AzureWebJobsStorage__tableServiceUri": "$HOST_STORAGE_TABLE_ENDPOINT",
    "EventHubConnection__fullyQualifiedNamespace": "$EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
    "EVENTHUB_NAME": "$EVENTHUB_NAME",
    "EVENTHUB_CONSUMER_GROUP": "$EVENTHUB_CONSUMER_GROUP",
    "ChargebackStorage__tableServiceUri": "$STORAGE_TABLE_ENDPOINT",
    "ChargebackStorage__blobServiceUri": "$STORAGE_BLOB_ENDPOINT",
    "LOG_ANALYTICS_WORKSPACE_ID": "$LOG_ANALYTICS_WORKSPACE_ID",
    "RECONCILE_SCHEDULE": "$RECONCILE_SCHEDULE",
    "CHARGEBACK_PRICE_SHEET": "config/price-sheet.json",
    "CHARGEBACK_COST_CENTERS": "config/cost-centers.csv"
  }
}
JSON
echo "postprovision: wrote $target for the resources in ${AZURE_RESOURCE_GROUP:-this environment}"
