"""The Functions app: registers each function; every one decodes, calls the package, encodes."""

from __future__ import annotations

import azure.functions as func

from chargeback import ingest, periods, runtime, usage_view
from chargeback.adapters import eventhub, http

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("ingest_usage")
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:05",
    maximum_interval="00:05:00",
)
@app.event_hub_message_trigger(
    arg_name="events",
    connection="EventHubConnection",
    event_hub_name="%EVENTHUB_NAME%",
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.BINARY,
)
def ingest_usage(events: list[func.EventHubEvent]) -> None:
    services = runtime.services()
    ingest.ingest(services.ledger, eventhub.batch_from_trigger(events, services.settings.eventhub_name))


@app.function_name("get_usage")
@app.route(route="usage/{period}", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def get_usage(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        period = periods.parse_period(req.route_params.get("period", ""))
        ledger = runtime.services().ledger
        document = usage_view.usage_document(period, ledger.period_rows(period), ledger.dead_letter_count(period))
        return http.json_response(document)

    return http.respond(handle)
