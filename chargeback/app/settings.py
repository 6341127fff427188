"""Reads the app settings, one name everywhere: code, local.settings.sample.json, Bicep, README."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from chargeback.access.gate import LOCAL_PRINCIPAL_SETTING, AccessPolicy
from chargeback.budgets import gateway
from chargeback.domain.errors import ConfigurationError
from chargeback.ingestion import llm_log_rows

# Names of the settings the code reads. Bicep, the sample settings file and the README use
# exactly these; a test keeps them in step.
STORAGE_CONNECTION = "ChargebackStorage"
STORAGE_TABLE_URI = "ChargebackStorage__tableServiceUri"
STORAGE_BLOB_URI = "ChargebackStorage__blobServiceUri"
STORAGE_QUEUE_URI = "ChargebackStorage__queueServiceUri"
STORAGE_CLIENT_ID = "ChargebackStorage__clientId"
EVENTHUB_NAME = "EVENTHUB_NAME"
EVENTHUB_CONSUMER_GROUP = "EVENTHUB_CONSUMER_GROUP"
LEDGER_TABLE = "CHARGEBACK_LEDGER_TABLE"
DEAD_LETTER_TABLE = "CHARGEBACK_DEAD_LETTER_TABLE"
RECONCILIATION_TABLE = "CHARGEBACK_RECONCILIATION_TABLE"
REPORTS_CONTAINER = "CHARGEBACK_REPORTS_CONTAINER"
DEAD_LETTER_CONTAINER = "CHARGEBACK_DEAD_LETTER_CONTAINER"
REPORT_QUEUE = "CHARGEBACK_REPORT_QUEUE"
LOG_ANALYTICS_WORKSPACE_ID = "LOG_ANALYTICS_WORKSPACE_ID"
MONITOR_EXPORT = "CHARGEBACK_MONITOR_EXPORT"
MONITOR_CLIENT_ID = "CHARGEBACK_MONITOR_CLIENT_ID"
METRIC_NAMESPACE = "CHARGEBACK_METRIC_NAMESPACE"
SUBSCRIPTION_DIMENSION = "CHARGEBACK_SUBSCRIPTION_DIMENSION"
RECONCILE_SCHEDULE = "RECONCILE_SCHEDULE"
RECONCILE_TOLERANCE_PERCENT = "CHARGEBACK_RECONCILE_TOLERANCE_PERCENT"
RECONCILE_LAG_HOURS = "CHARGEBACK_RECONCILE_LAG_HOURS"
FINAL_GRACE_DAYS = "CHARGEBACK_FINAL_GRACE_DAYS"
PRICE_SHEET = "CHARGEBACK_PRICE_SHEET"
COST_CENTERS = "CHARGEBACK_COST_CENTERS"
LOCAL_PRINCIPAL = LOCAL_PRINCIPAL_SETTING
PROVIDER_NAME = "CHARGEBACK_PROVIDER_NAME"
LLM_LOG_SCOPE = "CHARGEBACK_LLM_LOG_SCOPE"
LLM_LOG_EXPORT = "CHARGEBACK_LLM_LOG_EXPORT"
DOWNLOADS = "CHARGEBACK_DOWNLOADS"
DOWNLOAD_CHOICES = ("redirect", "inline")
FINOPS_HUB_STORAGE = "CHARGEBACK_FINOPS_HUB_STORAGE"
FINOPS_HUB_SCOPE = "CHARGEBACK_FINOPS_HUB_SCOPE"
LINES_ENDPOINT = "CHARGEBACK_LINES_ENDPOINT"
LINES_RULE_ID = "CHARGEBACK_LINES_RULE_ID"
LINES_FILE = "CHARGEBACK_LINES_FILE"
BUDGETS = "CHARGEBACK_BUDGETS"
BUDGET_SCHEDULE = "BUDGET_SCHEDULE"
BUDGET_TABLE = "CHARGEBACK_BUDGET_TABLE"
ENFORCEMENT = "CHARGEBACK_ENFORCEMENT"
ENFORCEMENT_CHOICES = ("off", "on")
APIM_RESOURCE_ID = "CHARGEBACK_APIM_RESOURCE_ID"
ARM_ENDPOINT = "CHARGEBACK_ARM_ENDPOINT"
ARM_CLIENT_ID = "CHARGEBACK_ARM_CLIENT_ID"
MAX_SUSPENSIONS = "CHARGEBACK_MAX_SUSPENSIONS"

DEFAULTS: Mapping[str, str] = {
    EVENTHUB_NAME: "aoai-usage",
    EVENTHUB_CONSUMER_GROUP: "chargeback",
    LEDGER_TABLE: "usageledger",
    DEAD_LETTER_TABLE: "usagedeadletters",
    RECONCILIATION_TABLE: "usagereconciliation",
    REPORTS_CONTAINER: "reports",
    DEAD_LETTER_CONTAINER: "deadletters",
    REPORT_QUEUE: "report-jobs",
    SUBSCRIPTION_DIMENSION: "Subscription ID",
    RECONCILE_SCHEDULE: "0 0 2 * * *",
    RECONCILE_TOLERANCE_PERCENT: "1.0",
    RECONCILE_LAG_HOURS: "6",
    FINAL_GRACE_DAYS: "5",
    PRICE_SHEET: "config/price-sheet.json",
    COST_CENTERS: "config/cost-centers.csv",
    PROVIDER_NAME: "AI gateway platform",
    LLM_LOG_SCOPE: llm_log_rows.SCOPE_STREAMED,
    DOWNLOADS: "redirect",
    BUDGETS: "config/budgets.csv",
    BUDGET_SCHEDULE: "0 */15 * * * *",
    BUDGET_TABLE: "budgetstate",
    ENFORCEMENT: "off",
    ARM_ENDPOINT: "https://management.azure.com",
    MAX_SUSPENSIONS: "5",
}


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where the ledger and reports live: a connection string, or service URIs and an identity."""

    connection_string: str | None
    table_service_uri: str | None
    blob_service_uri: str | None
    queue_service_uri: str | None
    client_id: str | None
    ledger_table: str
    dead_letter_table: str
    reconciliation_table: str
    reports_container: str
    dead_letter_container: str
    report_queue: str
    """The Storage queue report generation jobs wait in; the queue-triggered function reads it."""
    budget_table: str = "budgetstate"
    """Budget records: threshold crossings, suspensions, breaker trips, a partition per month."""


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """Where the budgets are defined and whether, and through what, they suspend subscriptions."""

    file: str | None = None
    """The budget file (CSV or JSON), relative to the app root; None: no budgets."""
    enforcement: bool = False
    """``on``: exceeded ``suspend`` budgets suspend their APIM subscriptions; ``off``: they show ``would_suspend``."""
    apim_resource_id: str | None = None
    """The one API Management instance whose subscriptions are suspended and re-activated."""
    arm_endpoint: str = "https://management.azure.com"
    """Azure Resource Manager's endpoint (another one in a sovereign cloud)."""
    arm_client_id: str | None = None
    """The client id of the user-assigned identity that signs in to Azure Resource Manager."""
    max_suspensions: int = 5
    """More suspensions due in one evaluation than this trips the breaker: none is made."""


@dataclass(frozen=True, slots=True)
class FinOpsHubSettings:
    """Where final reports are delivered as FOCUS Parquet: a FinOps hub's storage, and this source's folder."""

    connection_string: str | None
    """Locally (Azurite): a connection string."""
    blob_service_uri: str | None
    """In Azure: the hub storage account's blob endpoint, reached with the app's identity."""
    scope: str
    """The folder under each month of the hub's ``Costs`` dataset: ``chargeback/<provider, slugged>`` by default."""


@dataclass(frozen=True, slots=True)
class LinesSettings:
    """Where committed report lines are published: a data collection rule's ingestion endpoint, or a file."""

    endpoint: str | None
    """The rule's logs ingestion endpoint (https://...), reached with the app's identity."""
    rule_id: str | None
    """The rule's immutable id (``dcr-...``)."""
    file: str | None
    """Locally: the JSON Lines file the rows are appended to, relative to the app root."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the app reads, validated once."""

    storage: StorageSettings
    eventhub_name: str
    consumer_group: str
    workspace_id: str | None
    monitor_export: str | None
    monitor_client_id: str | None
    metric_namespace: str | None
    """Only AppMetrics rows of this namespace are compared; None compares every namespace."""
    subscription_dimension: str
    tolerance_percent: Decimal
    lag_hours: int
    final_grace_days: int
    price_sheet: str
    cost_centers: str
    access: AccessPolicy
    """Whether App Service Authentication is on, whether this is Azure, and a local simulated caller."""
    provider_name: str
    """Who provides the gateway's service and issues the chargeback: FOCUS ProviderName and InvoiceIssuerName."""
    llm_log_scope: str = llm_log_rows.SCOPE_STREAMED
    """Which calls the LLM logs bill (``llm_log_rows.SCOPES``); the usage events bill the others."""
    llm_log_export: str | None = None
    """Bill LLM logs from this CSV export of the joined query's rows instead of querying."""
    downloads: str = "redirect"
    """``redirect``: report files are served as short-lived storage links; ``inline``: through the app
    (for a storage account callers cannot reach)."""
    finops_hub: FinOpsHubSettings | None = None
    """The FinOps hub final reports are delivered to, when one is named."""
    lines: LinesSettings | None = None
    """Where each committed generation's lines are published, when anywhere."""
    budgets: BudgetSettings = BudgetSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (the process environment by default)."""
        source = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = source.get(name, DEFAULTS.get(name))
            return value.strip() if value and value.strip() else None

        def need(name: str) -> str:
            value = get(name)
            if value is None:
                raise ConfigurationError(f"setting {name} is required")
            return value

        connection = get(STORAGE_CONNECTION)
        table_uri = get(STORAGE_TABLE_URI)
        blob_uri = get(STORAGE_BLOB_URI)
        if connection is None and (table_uri is None or blob_uri is None):
            raise ConfigurationError(
                f"set {STORAGE_CONNECTION} (a connection string) or both "
                f"{STORAGE_TABLE_URI} and {STORAGE_BLOB_URI} (identity-based)"
            )
        storage = StorageSettings(
            connection_string=connection,
            table_service_uri=table_uri,
            blob_service_uri=blob_uri,
            queue_service_uri=get(STORAGE_QUEUE_URI),
            client_id=get(STORAGE_CLIENT_ID),
            ledger_table=need(LEDGER_TABLE),
            dead_letter_table=need(DEAD_LETTER_TABLE),
            reconciliation_table=need(RECONCILIATION_TABLE),
            reports_container=need(REPORTS_CONTAINER),
            dead_letter_container=need(DEAD_LETTER_CONTAINER),
            report_queue=need(REPORT_QUEUE),
            budget_table=need(BUDGET_TABLE),
        )
        return cls(
            storage=storage,
            eventhub_name=need(EVENTHUB_NAME),
            consumer_group=need(EVENTHUB_CONSUMER_GROUP),
            workspace_id=get(LOG_ANALYTICS_WORKSPACE_ID),
            monitor_export=get(MONITOR_EXPORT),
            monitor_client_id=get(MONITOR_CLIENT_ID),
            metric_namespace=get(METRIC_NAMESPACE),
            subscription_dimension=need(SUBSCRIPTION_DIMENSION),
            tolerance_percent=_decimal(RECONCILE_TOLERANCE_PERCENT, need(RECONCILE_TOLERANCE_PERCENT)),
            lag_hours=_whole(RECONCILE_LAG_HOURS, need(RECONCILE_LAG_HOURS)),
            final_grace_days=_whole(FINAL_GRACE_DAYS, need(FINAL_GRACE_DAYS)),
            price_sheet=need(PRICE_SHEET),
            cost_centers=need(COST_CENTERS),
            access=AccessPolicy.from_env(source, get(LOCAL_PRINCIPAL)),
            provider_name=need(PROVIDER_NAME),
            llm_log_scope=_choice(LLM_LOG_SCOPE, need(LLM_LOG_SCOPE), llm_log_rows.SCOPES),
            llm_log_export=get(LLM_LOG_EXPORT),
            downloads=_choice(DOWNLOADS, need(DOWNLOADS), DOWNLOAD_CHOICES),
            finops_hub=_finops_hub(get(FINOPS_HUB_STORAGE), get(FINOPS_HUB_SCOPE), need(PROVIDER_NAME)),
            lines=_lines(get(LINES_ENDPOINT), get(LINES_RULE_ID), get(LINES_FILE)),
            budgets=_budget_settings(
                BudgetSettings(
                    file=get(BUDGETS),
                    enforcement=_choice(ENFORCEMENT, need(ENFORCEMENT), ENFORCEMENT_CHOICES) == "on",
                    apim_resource_id=get(APIM_RESOURCE_ID),
                    arm_endpoint=need(ARM_ENDPOINT),
                    arm_client_id=get(ARM_CLIENT_ID),
                    max_suspensions=_whole(MAX_SUSPENSIONS, need(MAX_SUSPENSIONS)),
                )
            ),
        )


def _lines(endpoint: str | None, rule_id: str | None, file: str | None) -> LinesSettings | None:
    """The publication settings: an endpoint and a rule together, or a file, or neither (None)."""
    if (endpoint is None) != (rule_id is None):
        raise ConfigurationError(f"settings {LINES_ENDPOINT} and {LINES_RULE_ID} are set together or not at all")
    if endpoint is not None and not endpoint.lower().startswith(("https://", "http://")):
        raise ConfigurationError(f"setting {LINES_ENDPOINT} must be the rule's logs ingestion endpoint (https://...)")
    if endpoint is None and file is None:
        return None
    return LinesSettings(endpoint=endpoint, rule_id=rule_id, file=file)


_SCOPE_SEGMENT = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,79}\Z")
_NOT_A_PROVIDER = frozenset({"microsoft", "microsoft corporation"})


def _finops_hub(storage: str | None, scope: str | None, provider: str) -> FinOpsHubSettings | None:
    """The hub settings, or None when no hub is named; the scope defaults to ``chargeback/<provider>``."""
    if storage is None:
        return None
    if provider.casefold() in _NOT_A_PROVIDER:
        raise ConfigurationError(
            f"setting {PROVIDER_NAME} must name the platform team, not Microsoft, when {FINOPS_HUB_STORAGE} is set: "
            "a hub's users would take the chargeback for the Azure bill it re-divides"
        )
    if scope is None:
        scope = "chargeback/" + (re.sub(r"[^a-z0-9]+", "-", provider.casefold()).strip("-") or "provider")
    segments = scope.strip("/").split("/")
    if len(scope) > 256 or not all(_SCOPE_SEGMENT.match(segment) for segment in segments):
        raise ConfigurationError(
            f"setting {FINOPS_HUB_SCOPE} must be folder names of letters, digits, '.', '_' and '-' joined by '/'"
        )
    scope = "/".join(segments)
    if storage.lower().startswith(("https://", "http://")):
        return FinOpsHubSettings(connection_string=None, blob_service_uri=storage, scope=scope)
    if "=" not in storage:
        raise ConfigurationError(
            f"setting {FINOPS_HUB_STORAGE} must be a blob service URI (https://...) or a connection string"
        )
    return FinOpsHubSettings(connection_string=storage, blob_service_uri=None, scope=scope)


def _budget_settings(budgets: BudgetSettings) -> BudgetSettings:
    """The budget settings checked together: an instance to act on when enforcement is on, well-formed ids."""
    try:
        endpoint = gateway.check_endpoint(budgets.arm_endpoint)
    except ConfigurationError as exc:
        raise ConfigurationError(f"setting {ARM_ENDPOINT}: {exc}") from None
    instance = budgets.apim_resource_id
    if instance is not None:
        try:
            instance = gateway.check_instance(instance)
        except ConfigurationError as exc:
            raise ConfigurationError(f"setting {APIM_RESOURCE_ID}: {exc}") from None
    elif budgets.enforcement:
        raise ConfigurationError(f"setting {ENFORCEMENT} is on, so {APIM_RESOURCE_ID} must name the API Management")
    return dataclasses.replace(budgets, arm_endpoint=endpoint, apim_resource_id=instance)


def _decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ConfigurationError(f"setting {name} must be a number, got {raw!r}") from exc
    if not value.is_finite() or value < 0:
        raise ConfigurationError(f"setting {name} must be a non-negative number, got {raw!r}")
    return value


def _whole(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise ConfigurationError(f"setting {name} must be a whole number, got {raw!r}")
    return int(raw)


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.lower()
    if value not in choices:
        raise ConfigurationError(f"setting {name} must be one of {', '.join(choices)}, got {raw!r}")
    return value
