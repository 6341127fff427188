# Writes local.settings.json so that `func start` runs this app against the resources
# `azd provision` just created. Only identity-based settings: locally the app signs in as you
# (az login / azd auth login) with the roles main.bicep granted to AZURE_PRINCIPAL_ID. It
# never reads or writes a key or a connection string.
$ErrorActionPreference = 'Stop'

$required = @(
    'EVENTHUB_FULLY_QUALIFIED_NAMESPACE', 'EVENTHUB_NAME', 'EVENTHUB_CONSUMER_GROUP',
    'STORAGE_BLOB_ENDPOINT', 'STORAGE_TABLE_ENDPOINT',
    'HOST_STORAGE_BLOB_ENDPOINT', 'HOST_STORAGE_QUEUE_ENDPOINT', 'HOST_STORAGE_TABLE_ENDPOINT',
    'LOG_ANALYTICS_WORKSPACE_ID', 'RECONCILE_SCHEDULE'
)
$missing = @($required | Where-Object { -not [Environment]::GetEnvironmentVariable($_) })
if ($missing.Count -gt 0) {
    Write-Error "postprovision: not set: $($missing -join ' ') (run through azd, or set the main.bicep outputs)"
    exit 1
}

$values = [ordered]@{
    'FUNCTIONS_WORKER_RUNTIME'                    = 'python'
    'AzureWebJobsStorage__blobServiceUri'         = $env:HOST_STORAGE_BLOB_ENDPOINT
    'AzureWebJobsStorage__queueServiceUri'        = $env:HOST_STORAGE_QUEUE_ENDPOINT
    'AzureWebJobsStorage__tableServiceUri'        = $env:HOST_STORAGE_TABLE_ENDPOINT
    'EventHubConnection__fullyQualifiedNamespace' = $env:EVENTHUB_FULLY_QUALIFIED_NAMESPACE
    'EVENTHUB_NAME'                               = $env:EVENTHUB_NAME
    'EVENTHUB_CONSUMER_GROUP'                     = $env:EVENTHUB_CONSUMER_GROUP
    'ChargebackStorage__tableServiceUri'          = $env:STORAGE_TABLE_ENDPOINT
    'ChargebackStorage__blobServiceUri'           = $env:STORAGE_BLOB_ENDPOINT
    'LOG_ANALYTICS_WORKSPACE_ID'                  = $env:LOG_ANALYTICS_WORKSPACE_ID
    'RECONCILE_SCHEDULE'                          = $env:RECONCILE_SCHEDULE
    'CHARGEBACK_PRICE_SHEET'                      = 'config/price-sheet.json'
    'CHARGEBACK_COST_CENTERS'                     = 'config/cost-centers.csv'
}

$target = 'local.settings.json'
[ordered]@{ IsEncrypted = $false; Values = $values } |
    ConvertTo-Json -Depth 3 |
    Set-Content -Path $target -Encoding utf8
Write-Host "postprovision: wrote $target for the resources in $env:AZURE_RESOURCE_GROUP"
