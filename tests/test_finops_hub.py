"""Final months reach a FinOps hub's ingestion container as FOCUS Parquet, on Azurite as the hub's storage."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter
from azure.storage.blob import BlobServiceClient, ContainerClient

from chargeback.adapters.finops_hub import BlobHubStore
from chargeback.app import runtime
from chargeback.app.settings import FINOPS_HUB_SCOPE, FINOPS_HUB_STORAGE, PROVIDER_NAME
from chargeback.domain.errors import ChargebackError, TransientStorageError
from chargeback.reports import finops_hub
from chargeback.reports.finops_hub import Found, Stamp
from chargeback.reports.formats import FOCUS_COLUMNS
from devtools.emulator import Azurite
from devtools.hostshape import take_queue_messages
from tests import focus_validator
from tests.functions import registered, run_queue
from tests.test_focus import UNSATISFIABLE, column_and_dataset_rules, declared_criteria, make_report
from tests.test_report_api import (
    AFTER_OCTOBER_GRACE,
    DURING_NOVEMBER,
    event,
    fixture_clock,  # noqa: F401 - a fixture this module uses
    fixture_october,  # noqa: F401 - a fixture this module uses
    generated,
    request,
    send,
)

pytestmark = pytest.mark.azurite

OCTOBER_FOLDER = "Costs/2026/10/{scope}"
DATA = "chargeback-202610__chargeback.parquet"


@pytest.fixture(name="provider")
def fixture_provider(app_settings: dict[str, str], azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> str:
    """A hub on Azurite; a provider name of this test's own, so its default scope is a folder of its own."""
    provider = f"Contoso AI Platform {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(PROVIDER_NAME, provider)
    monkeypatch.setenv(FINOPS_HUB_STORAGE, azurite.connection_string)
    runtime.reset()
    return provider


@pytest.fixture(name="scope")
def fixture_scope(provider: str) -> str:
    return "chargeback/" + provider.lower().replace(" ", "-")


@pytest.fixture(name="ingestion")
def fixture_ingestion(azurite: Azurite, provider: str) -> ContainerClient:
    """The hub's ingestion container, which a hub's deployment creates."""
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("ingestion")
    with suppress(ResourceExistsError):
        container.create_container()
    return container


def folder_blobs(ingestion: ContainerClient, scope: str, month: str = "10") -> dict[str, Any]:
    prefix = f"Costs/2026/{month}/{scope}/"
    return {
        blob.name.removeprefix(prefix): blob
        for blob in ingestion.list_blobs(name_starts_with=prefix, include=["metadata"])
    }


def hub_rows(ingestion: ContainerClient, scope: str, month: str = "10") -> Any:
    name = f"Costs/2026/{month}/{scope}/chargeback-2026{month}__chargeback.parquet"
    return pq.read_table(io.BytesIO(ingestion.download_blob(name).readall()))


def finalised_october(clock: Callable[[datetime], None]) -> dict[str, Any]:
    """October's final report, committed by its job; the delivery that commit queued is left waiting."""
    clock(AFTER_OCTOBER_GRACE)
    return generated("2026-10")


def test_a_final_report_lands_in_the_documented_layout_with_its_manifest(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None]
) -> None:
    final = finalised_october(clock)
    assert folder_blobs(ingestion, scope) == {}
    assert run_queue() == [None]
    blobs = folder_blobs(ingestion, scope)
    assert sorted(blobs) == [DATA, "manifest.json"]
    assert ingestion.download_blob(f"Costs/2026/10/{scope}/manifest.json").readall() == b"{}"
    for blob in blobs.values():
        assert blob.metadata["generation"] == final["generation"]
        assert blob.metadata["status"] == "final"


def test_the_default_scope_is_chargeback_and_the_provider_slugged(provider: str, scope: str) -> None:
    hub = runtime.services().finops_hub
    assert hub is not None
    assert hub.scope == scope == f"chargeback/contoso-ai-platform-{provider.rsplit(maxsplit=1)[-1]}"


def test_the_hubs_parquet_bills_exactly_what_the_final_report_bills(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None]
) -> None:
    final = finalised_october(clock)
    run_queue()
    table = hub_rows(ingestion, scope)
    billed = sum(table.column("BilledCost").to_pylist(), Decimal(0))
    assert billed == Decimal(final["grand_total"]) == Decimal("8.50")
    assert table.num_rows == final["row_counts"]["lines"]


def test_rows_say_which_source_they_come_from_and_who_provides_it(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None], provider: str
) -> None:
    finalised_october(clock)
    run_queue()
    rows = hub_rows(ingestion, scope).to_pylist()
    assert {(r["x_SourceName"], r["x_SourceProvider"], r["x_SourceType"], r["x_SourceVersion"]) for r in rows} == {
        ("Token chargeback", provider, "Chargeback", "1.2")
    }
    assert {r["ProviderName"] for r in rows} == {r["InvoiceIssuerName"] for r in rows} == {provider}


def test_only_columns_the_hubs_raw_table_maps_are_written_and_the_rest_ride_in_x_sku_details(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None]
) -> None:
    finalised_october(clock)
    run_queue()
    table = hub_rows(ingestion, scope)
    assert set(table.column_names) <= finops_hub.HUB_COLUMNS
    focus = request("GET", "reports/2026-10", {"format": "focus-parquet"}).get_body()
    export = pq.read_table(io.BytesIO(focus)).to_pylist()
    by_line = {(r["SubAccountId"], r["ResourceId"]): r for r in export}
    for row in table.to_pylist():
        details = json.loads(row["x_SkuDetails"])
        line = by_line[(row["SubAccountId"], row["ResourceId"])]
        assert details["PromptTokens"] == line["x_PromptTokens"]
        assert details["PricingMethod"] == line["x_PricingMethod"]
        assert Decimal(details["InputUnitPrice"]) == line["x_InputUnitPrice"]
        assert "Model" not in details  # SkuId holds it


def test_delivering_a_month_again_changes_nothing(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None]
) -> None:
    finalised_october(clock)
    run_queue()
    before = {name: blob.etag for name, blob in folder_blobs(ingestion, scope).items()}
    hub = runtime.services().finops_hub
    assert hub is not None
    assert finops_hub.deliver(hub, "2026-10") == finops_hub.ALREADY
    assert {name: blob.etag for name, blob in folder_blobs(ingestion, scope).items()} == before


def test_corrections_of_a_final_month_are_delivered_with_the_later_month_and_replaced_by_its_final(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None]
) -> None:
    finalised_october(clock)
    run_queue()
    late = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    send([event("aoai-product-subscription-one", 400_000, 0, late)], late, partition="1")
    send([event("aoai-product-subscription-one", 1_000_000, 0, DURING_NOVEMBER)], DURING_NOVEMBER, partition="2")
    clock(DURING_NOVEMBER)
    draft = generated("2026-11")
    assert draft["adjusted_periods"] == ["2026-10"]
    assert run_queue() == [None]
    corrections = hub_rows(ingestion, scope, "11").to_pylist()
    assert [
        (r["ChargeClass"], r["ChargePeriodStart"].date().isoformat(), r["ConsumedQuantity"]) for r in corrections
    ] == [("Correction", "2026-10-01", Decimal(400_000))]
    clock(datetime(2026, 12, 8, 2, tzinfo=UTC))
    final = generated("2026-11")
    assert run_queue() == [None]
    blobs = folder_blobs(ingestion, scope, "11")
    assert sorted(blobs) == ["chargeback-202611__chargeback.parquet", "manifest.json"]
    assert blobs["manifest.json"].metadata["generation"] == final["generation"]
    replaced = hub_rows(ingestion, scope, "11")
    assert sum(replaced.column("BilledCost").to_pylist(), Decimal(0)) == Decimal(final["grand_total"])
    assert replaced.num_rows == final["row_counts"]["lines"] > len(corrections)


def test_a_draft_without_corrections_delivers_nothing(ingestion: ContainerClient, scope: str, october: None) -> None:
    draft = generated("2026-10")
    assert draft["status"] == "draft"
    assert run_queue() == []
    hub = runtime.services().finops_hub
    assert hub is not None
    assert finops_hub.deliver(hub, "2026-10") == finops_hub.NOTHING
    assert folder_blobs(ingestion, scope) == {}


class Recording:
    """The real store on Azurite, recording each write and failing the ones it is told to."""

    def __init__(self, store: BlobHubStore, fail: set[str] | None = None) -> None:
        self.store = store
        self.writes: list[str] = []
        self.fail = fail or set()

    def find(self, name: str) -> Found | None:
        return self.store.find(name)

    def put(self, name: str, data: bytes, stamp: Stamp, etag: str | None) -> None:
        self.store.put(name, data, stamp, etag)
        self.writes.append("data")

    def put_manifest(self, name: str, stamp: Stamp) -> None:
        if "manifest" in self.fail:
            self.fail.discard("manifest")
            raise TransientStorageError("write a FinOps hub manifest: storage answered 503")
        self.writes.append("manifest")
        self.store.put_manifest(name, stamp)


@pytest.fixture(name="recording")
def fixture_recording(provider: str, monkeypatch: pytest.MonkeyPatch) -> Recording:
    services = runtime.services()
    store = services._hub_store
    assert store is not None
    recording = Recording(store)
    monkeypatch.setitem(services.__dict__, "_hub_store", recording)
    return recording


def test_the_manifest_is_written_after_the_data_and_a_failure_between_them_heals_on_redelivery(
    ingestion: ContainerClient,
    scope: str,
    october: None,
    clock: Callable[[datetime], None],
    recording: Recording,
) -> None:
    finalised_october(clock)
    recording.fail.add("manifest")
    names = runtime.services().settings.storage
    assert names.connection_string is not None
    [message] = take_queue_messages(names.connection_string, names.report_queue)
    deliver = registered("generate_report").get_user_function()
    with pytest.raises(TransientStorageError):
        deliver(message)  # the host records a failed invocation and delivers the message again
    assert sorted(folder_blobs(ingestion, scope)) == [DATA]  # no manifest: the hub has not been told
    deliver(message)
    assert recording.writes == ["data", "manifest"]  # the data was not written twice
    assert sorted(folder_blobs(ingestion, scope)) == [DATA, "manifest.json"]


def test_deliveries_racing_for_one_month_leave_one_file_and_one_manifest(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None], recording: Recording
) -> None:
    final = finalised_october(clock)
    hub = runtime.services().finops_hub
    assert hub is not None
    barrier = threading.Barrier(4)
    outcomes: list[str | BaseException] = []

    def race() -> None:
        barrier.wait()
        try:
            outcomes.append(finops_hub.deliver(hub, "2026-10"))
        except BaseException as exc:  # noqa: BLE001 - the test reports what each racer met
            outcomes.append(exc)

    racers = [threading.Thread(target=race) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert all(isinstance(outcome, str) for outcome in outcomes), outcomes
    assert recording.writes.count("data") == 1  # the others found it written, by its content hash
    assert sorted(folder_blobs(ingestion, scope)) == [DATA, "manifest.json"]
    assert sum(hub_rows(ingestion, scope).column("BilledCost").to_pylist(), Decimal(0)) == Decimal(final["grand_total"])


def test_a_draft_never_replaces_a_final_already_delivered(
    ingestion: ContainerClient, scope: str, october: None, clock: Callable[[datetime], None]
) -> None:
    final = finalised_october(clock)
    run_queue()
    hub = runtime.services().finops_hub
    assert hub is not None
    name = finops_hub.data_name("2026-10", scope)
    etag = ingestion.get_blob_client(name).get_blob_properties().etag
    stale = Stamp("20261101T020000Z-000000000000", "draft", "0" * 64)
    assert stale.rank() < Stamp(final["generation"], "final", "").rank()
    assert not finops_hub._put_data(hub, name, b"stale", stale)
    assert ingestion.get_blob_client(name).get_blob_properties().etag == etag


def test_a_hub_that_cannot_be_reached_never_fails_the_report(
    provider: str, october: None, clock: Callable[[datetime], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    monkeypatch.setenv(FINOPS_HUB_STORAGE, unreachable)
    runtime.reset()
    clock(AFTER_OCTOBER_GRACE)
    assert generated("2026-10")["status"] == "final"
    assert request("GET", "reports/2026-10").status_code == 200


def test_a_delivery_the_commit_could_not_queue_is_queued_by_the_timer(
    ingestion: ContainerClient,
    scope: str,
    october: None,
    clock: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = runtime.services()
    queue = services._job_queue
    send_message = queue.send

    def refuse_deliveries(message: str) -> None:
        if finops_hub.is_delivery(message):
            raise TransientStorageError("queue a report job: storage answered 503")
        send_message(message)

    monkeypatch.setattr(queue, "send", refuse_deliveries)
    final = finalised_october(clock)
    assert final["status"] == "final"
    assert "chargeback.report.follow_up_failed" in caplog.text
    monkeypatch.setattr(queue, "send", send_message)
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    registered("reconcile_and_report").get_user_function()(timer)
    run_queue()
    run_queue()
    assert sorted(folder_blobs(ingestion, scope)) == [DATA, "manifest.json"]


def test_a_delivery_message_without_a_hub_configured_delivers_nothing(app_settings: dict[str, str]) -> None:
    assert finops_hub.run(runtime.services().finops_hub, finops_hub.message("2026-10")) == finops_hub.NOTHING


@pytest.mark.parametrize(
    "text", ['{"kind": "finops-hub-delivery"}', '{"kind": "finops-hub-delivery", "period": "26-10"}']
)
def test_a_malformed_delivery_message_fails_so_the_host_moves_it_to_poison(text: str) -> None:
    assert finops_hub.is_delivery(text)
    with pytest.raises(ChargebackError):
        finops_hub.run(None, text)


@pytest.fixture(name="env")
def fixture_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    from chargeback.app.settings import Settings

    def settings(**values: str) -> Any:
        base = {"ChargebackStorage": "UseDevelopmentStorage=true", **values}
        return Settings.from_env(base).finops_hub

    yield settings


def test_no_hub_is_named_by_default(env: Callable[..., Any]) -> None:
    assert env() is None


@pytest.mark.parametrize(
    ("storage", "uri", "connection"),
    [
        ("https://hubstore.blob.core.windows.net/", "https://hubstore.blob.core.windows.net/", None),
        ("UseDevelopmentStorage=true", None, "UseDevelopmentStorage=true"),
    ],
)
def test_the_hub_is_a_blob_uri_in_azure_or_a_connection_string_locally(
    env: Callable[..., Any], storage: str, uri: str | None, connection: str | None
) -> None:
    hub = env(**{FINOPS_HUB_STORAGE: storage})
    assert (hub.blob_service_uri, hub.connection_string, hub.scope) == (
        uri,
        connection,
        "chargeback/ai-gateway-platform",
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({FINOPS_HUB_STORAGE: "hubstore"}, "must be a blob service URI"),
        ({FINOPS_HUB_STORAGE: "UseDevelopmentStorage=true", FINOPS_HUB_SCOPE: "a/../b"}, "must be folder names"),
        ({FINOPS_HUB_STORAGE: "UseDevelopmentStorage=true", FINOPS_HUB_SCOPE: "a//b"}, "must be folder names"),
        ({FINOPS_HUB_STORAGE: "UseDevelopmentStorage=true", PROVIDER_NAME: "Microsoft"}, "not Microsoft"),
    ],
)
def test_a_malformed_hub_setting_is_refused(env: Callable[..., Any], values: dict[str, str], message: str) -> None:
    with pytest.raises(ChargebackError, match=message):
        env(**values)


def test_a_scope_of_its_own_is_kept_as_given(env: Callable[..., Any]) -> None:
    hub = env(**{FINOPS_HUB_STORAGE: "UseDevelopmentStorage=true", FINOPS_HUB_SCOPE: "/internal/ai-gateway/"})
    assert hub.scope == "internal/ai-gateway"


def test_the_ingestion_id_is_the_months_own_and_the_file_name_separates_it_with_two_underscores() -> None:
    assert (
        finops_hub.data_name("2026-10", "chargeback/x")
        == "Costs/2026/10/chargeback/x/chargeback-202610__chargeback.parquet"
    )
    assert finops_hub.manifest_name("2026-10", "chargeback/x") == "Costs/2026/10/chargeback/x/manifest.json"
    assert "__" not in finops_hub.ingestion_id("2026-10")


# --------------------------------------------------------------------------------------------
# The file itself, for a report with every kind of line (per-token, blended, PTU shares, late usage)


def test_the_hub_file_of_a_report_with_every_kind_of_line_bills_its_grand_total() -> None:
    report = make_report()
    data, rows, cost = finops_hub.hub_file(report, whole=True)
    table = pq.read_table(io.BytesIO(data))
    assert cost == sum(table.column("BilledCost").to_pylist(), Decimal(0)) == report.grand_total
    assert rows == table.num_rows == len(report.lines)
    standard = {name for name in FOCUS_COLUMNS if not name.startswith("x_")}
    assert standard | {"x_CostCenter"} <= set(table.column_names) <= finops_hub.HUB_COLUMNS


def test_a_drafts_hub_file_holds_its_corrections_of_final_months_only() -> None:
    report = make_report()
    data, rows, cost = finops_hub.hub_file(report, whole=False)
    table = pq.read_table(io.BytesIO(data)).to_pylist()
    changes = report.lines[report.lines["charge_category"].isin(["adjustment", "correction"])]
    assert set(changes["charge_category"]) == {"adjustment", "correction"}
    assert {row["ChargeClass"] for row in table} == {"Correction"}
    assert rows == len(table) == len(changes) > 0
    assert cost == sum(changes["cost"], Decimal(0))


@pytest.mark.slow
@pytest.mark.parametrize("criteria", ["default", "declared"])
def test_the_focus_validator_fails_no_rule_of_the_hub_file_that_it_fails_of_the_export(
    criteria: str, tmp_path: Path
) -> None:
    report = make_report()
    data = tmp_path / finops_hub.FILE_NAME
    data.write_bytes(finops_hub.hub_file(report, whole=True)[0])
    chosen = declared_criteria(report) if criteria == "declared" else ()
    verdict = focus_validator.validate(data, tmp_path, chosen)
    assert set(verdict.failed) == UNSATISFIABLE, verdict.failed
    assert column_and_dataset_rules() <= verdict.passed | verdict.skipped | set(verdict.failed)
