"""The documented schemas (Azure Monitor Logs table reference) of the tables the workbooks and alert rules read."""

from __future__ import annotations

import json

from chargeback.reconciliation.monitor import APP_METRICS_COLUMNS
from tests.support import ROOT

_APP_COMMON = (
    ("AppRoleInstance", "string"), ("AppRoleName", "string"), ("AppVersion", "string"), ("_BilledSize", "real"),
    ("ClientBrowser", "string"), ("ClientCity", "string"), ("ClientCountryOrRegion", "string"),
    ("ClientIP", "string"), ("ClientModel", "string"), ("ClientOS", "string"), ("ClientStateOrProvince", "string"),
    ("ClientType", "string"), ("IKey", "string"), ("_IsBillable", "string"), ("ItemCount", "int"),
    ("Measurements", "dynamic"), ("OperationId", "string"), ("OperationName", "string"), ("ParentId", "string"),
    ("Properties", "dynamic"), ("ReferencedItemId", "string"), ("ReferencedType", "string"),
    ("ResourceGUID", "string"), ("_ResourceId", "string"), ("SDKVersion", "string"), ("SessionId", "string"),
    ("SourceSystem", "string"), ("_SubscriptionId", "string"), ("SyntheticSource", "string"), ("TenantId", "string"),
    ("TimeGenerated", "datetime"), ("Type", "string"), ("UserAccountId", "string"),
    ("UserAuthenticatedId", "string"), ("UserId", "string"),
)  # fmt: skip

APP_TRACES = (*_APP_COMMON, ("Message", "string"), ("SeverityLevel", "int"))
APP_REQUESTS = (
    *_APP_COMMON,
    ("DurationMs", "real"), ("Id", "string"), ("Name", "string"), ("ResultCode", "string"), ("Source", "string"),
    ("Success", "bool"), ("Url", "string"),
)  # fmt: skip
AZURE_METRICS = (
    ("Average", "real"), ("_BilledSize", "real"), ("CallerIpAddress", "string"), ("Category", "string"),
    ("Confidence", "string"), ("CorrelationId", "string"), ("Count", "real"), ("Description", "string"),
    ("DurationMs", "long"), ("FirstReportedDateTime", "string"), ("IndicatorThreatType", "string"),
    ("IsActive", "string"), ("_IsBillable", "string"), ("LastReportedDateTime", "string"),
    ("MaliciousIP", "string"), ("Maximum", "real"), ("MetricName", "string"), ("Minimum", "real"),
    ("OperationName", "string"), ("OperationVersion", "string"), ("RemoteIPCountry", "string"),
    ("RemoteIPLatitude", "real"), ("RemoteIPLongitude", "real"), ("Resource", "string"),
    ("ResourceGroup", "string"), ("ResourceId", "string"), ("_ResourceId", "string"),
    ("ResourceProvider", "string"), ("ResultDescription", "string"), ("ResultSignature", "string"),
    ("ResultType", "string"), ("Severity", "int"), ("SourceSystem", "string"), ("SubscriptionId", "string"),
    ("_SubscriptionId", "string"), ("TimeGenerated", "datetime"), ("TimeGrain", "string"), ("TLPLevel", "string"),
    ("Total", "real"), ("Type", "string"), ("UnitName", "string"),
)  # fmt: skip


def chargeback_lines() -> tuple[tuple[str, str], ...]:
    """ChargebackLines_CL as the Bicep declares it (the table and the rule's stream load this file)."""
    declared = json.loads((ROOT / "infra" / "app" / "chargeback-lines.columns.json").read_text(encoding="utf-8"))
    return tuple((column["name"], column["type"]) for column in declared)


def workspace_tables() -> list[dict[str, object]]:
    """Every table a workbook or alert rule reads, as the Kusto checker takes them."""
    tables = {
        "AppMetrics": APP_METRICS_COLUMNS,
        "AppTraces": APP_TRACES,
        "AppRequests": APP_REQUESTS,
        "AzureMetrics": AZURE_METRICS,
        "ChargebackLines_CL": chargeback_lines(),
    }
    return [{"table": name, "columns": [list(column) for column in columns]} for name, columns in tables.items()]
