# Writes local.settings.json so that `func start` runs this app against the resources
# `azd provision` just created, with every setting the app and its bindings read (the names of
# local.settings.sample.json, connections in their identity form) and the values the deployed
# app got. Only identity-based settings: locally the app signs in as you (az login / azd auth
# login) with the roles main.bicep granted to AZURE_PRINCIPAL_ID, so no client id is written. It
# never reads or writes a key or a connection string.
$ErrorActionPreference = 'Stop'

# Every output the app cannot run without; CHARGEBACK_METRIC_NAMESPACE may be empty (the
# reconciliation then compares every metric namespace). Budgets are never enforced from a
# developer's machine: CHARGEBACK_ENFORCEMENT is written off.
$required = @(
    'EVENTHUB_FULLY_QUALIFIED_NAMESPACE', 'EVENTHUB_NAME', 'EVENTHUB_CONSUMER_GROUP',
    'STORAGE_BLOB_ENDPOINT', 'STORAGE_QUEUE_ENDPOINT', 'STORAGE_TABLE_ENDPOINT',
    'HOST_STORAGE_BLOB_ENDPOINT', 'HOST_STORAGE_QUEUE_ENDPOINT', 'HOST_STORAGE_TABLE_ENDPOINT',
    'LOG_ANALYTICS_WORKSPACE_ID', 'RECONCILE_SCHEDULE', 'CHARGEBACK_RECONCILE_TOLERANCE_PERCENT',
    'CHARGEBACK_RECONCILE_LAG_HOURS', 'CHARGEBACK_FINAL_GRACE_DAYS', 'CHARGEBACK_PRICE_SHEET',
    'CHARGEBACK_COST_CENTERS', 'CHARGEBACK_DOWNLOADS', 'CHARGEBACK_PROVIDER_NAME', 'CHARGEBACK_LLM_LOG_SCOPE',
    'BUDGET_SCHEDULE', 'CHARGEBACK_ARM_ENDPOINT', 'CHARGEBACK_MAX_SUSPENSIONS'
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
    'ChargebackStorage__queueServiceUri'          = $env:STORAGE_QUEUE_ENDPOINT
    'CHARGEBACK_LEDGER_TABLE'                     = 'usageledger'
    'CHARGEBACK_DEAD_LETTER_TABLE'                = 'usagedeadletters'
    'CHARGEBACK_RECONCILIATION_TABLE'             = 'usagereconciliation'
    'CHARGEBACK_REPORTS_CONTAINER'                = 'reports'
    'CHARGEBACK_DEAD_LETTER_CONTAINER'            = 'deadletters'
    'CHARGEBACK_REPORT_QUEUE'                     = 'report-jobs'
    'LOG_ANALYTICS_WORKSPACE_ID'                  = $env:LOG_ANALYTICS_WORKSPACE_ID
    'CHARGEBACK_METRIC_NAMESPACE'                 = "$env:CHARGEBACK_METRIC_NAMESPACE"  # '' when unset, never null
    'CHARGEBACK_SUBSCRIPTION_DIMENSION'           = 'Subscription ID'
    'RECONCILE_SCHEDULE'                          = $env:RECONCILE_SCHEDULE
    'CHARGEBACK_RECONCILE_TOLERANCE_PERCENT'      = $env:CHARGEBACK_RECONCILE_TOLERANCE_PERCENT
    'CHARGEBACK_RECONCILE_LAG_HOURS'              = $env:CHARGEBACK_RECONCILE_LAG_HOURS
    'CHARGEBACK_FINAL_GRACE_DAYS'                 = $env:CHARGEBACK_FINAL_GRACE_DAYS
    'CHARGEBACK_PRICE_SHEET'                      = $env:CHARGEBACK_PRICE_SHEET
    'CHARGEBACK_COST_CENTERS'                     = $env:CHARGEBACK_COST_CENTERS
    'CHARGEBACK_PROVIDER_NAME'                    = $env:CHARGEBACK_PROVIDER_NAME
    'CHARGEBACK_LLM_LOG_SCOPE'                    = $env:CHARGEBACK_LLM_LOG_SCOPE
    'CHARGEBACK_DOWNLOADS'                        = $env:CHARGEBACK_DOWNLOADS
    'CHARGEBACK_FINOPS_HUB_STORAGE'               = "$env:CHARGEBACK_FINOPS_HUB_STORAGE"  # '' when no hub
    'CHARGEBACK_FINOPS_HUB_SCOPE'                 = "$env:CHARGEBACK_FINOPS_HUB_SCOPE"
    'CHARGEBACK_LINES_ENDPOINT'                   = "$env:CHARGEBACK_LINES_ENDPOINT"
    'CHARGEBACK_LINES_RULE_ID'                    = "$env:CHARGEBACK_LINES_RULE_ID"
    'CHARGEBACK_BUDGETS'                          = "$env:CHARGEBACK_BUDGETS"
    'BUDGET_SCHEDULE'                             = $env:BUDGET_SCHEDULE
    'CHARGEBACK_BUDGET_TABLE'                     = 'budgetstate'
    'CHARGEBACK_ENFORCEMENT'                      = 'off'
    'CHARGEBACK_APIM_RESOURCE_ID'                 = "$env:CHARGEBACK_APIM_RESOURCE_ID"
    'CHARGEBACK_ARM_ENDPOINT'                     = $env:CHARGEBACK_ARM_ENDPOINT
    'CHARGEBACK_MAX_SUSPENSIONS'                  = $env:CHARGEBACK_MAX_SUSPENSIONS
}

$target = 'local.settings.json'
[ordered]@{ IsEncrypted = $false; Values = $values } |
    ConvertTo-Json -Depth 3 |
    Set-Content -Path $target -Encoding utf8
Write-Host "postprovision: wrote $target for the resources in $env:AZURE_RESOURCE_GROUP"
