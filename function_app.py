"""The Functions app: registers each function; every one decodes, calls the package, encodes."""

from __future__ import annotations

import azure.functions as func

from chargeback.access import views as access_views
from chargeback.adapters import eventhub, http, telemetry
from chargeback.app import runtime
from chargeback.budgets import evaluate as budget_evaluation
from chargeback.domain import periods
from chargeback.ingestion import ingest
from chargeback.reports import corrections as report_corrections
from chargeback.reports import jobs as report_jobs
from chargeback.reports import service as report_service
from chargeback.reports import usage_totals

# The worker's telemetry (metrics, log lines) goes to Application Insights, set up once, here.
telemetry.configure()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

SIGNED_IN = func.AuthLevel.ANONYMOUS
"""The read endpoints' host auth level: App Service Authentication signs callers in and the app
checks their roles (chargeback.access.gate, which serves nothing in Azure without sign-in). The
host never takes a signed-in identity in place of a function key, so a key level would lock
browsers out."""

# azure.functions' Event Hub converter parses each event's EnqueuedTimeUtc by trying strptime
# formats in order; the host's ISO format is the sixth, which makes the converter the slowest
# step of ingestion (~85 µs an event). To be reported upstream (Azure/azure-functions-python-library:
# try datetime.fromisoformat first in meta._BaseConverter._parse_datetime); remove this line and
# eventhub.FastTimeEventHubConverter once a release does.
eventhub.install_fast_enqueued_time()


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
    batch = eventhub.batch_from_trigger(events, services.settings.eventhub_name)
    ingest.ingest(services.ledger, batch, events_billed=services.events_billed)


@app.function_name("get_usage")
@app.route(route="usage/{period}", methods=[func.HttpMethod.GET], auth_level=SIGNED_IN)
def get_usage(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        scope = services.caller(req.headers)
        period = periods.parse_period(req.route_params.get("period", ""))
        totals = services.month_totals.totals(period, services.clock())
        dead_letters = services.ledger.dead_letter_count(period)
        unattributed = services.llm_log_store.unattributed(period)
        document = access_views.usage(
            scope, period, usage_totals.frame(totals), dead_letters, services.cost_centers(), unattributed=unattributed
        )
        return http.json_response(document)

    return http.respond(handle)


@app.function_name("reconcile_and_report")
@app.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconcile_and_report(timer: func.TimerRequest) -> None:
    runtime.services().run_schedule()


@app.function_name("evaluate_budgets")
@app.timer_trigger(arg_name="timer", schedule="%BUDGET_SCHEDULE%", run_on_startup=False, use_monitor=True)
def evaluate_budgets(timer: func.TimerRequest) -> None:
    runtime.services().evaluate_budgets()


@app.function_name("get_budgets")
@app.route(route="budgets/{period}", methods=[func.HttpMethod.GET], auth_level=SIGNED_IN)
def get_budgets(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        scope = services.caller(req.headers)
        period = periods.parse_month(req.route_params.get("period", ""))
        snapshot = budget_evaluation.latest(services.budgets, period)
        return http.json_response(access_views.budgets(scope, snapshot, services.cost_centers()))

    return http.respond(handle)


@app.function_name("generate_report")
@app.queue_trigger(arg_name="message", queue_name="%CHARGEBACK_REPORT_QUEUE%", connection="ChargebackStorage")
def generate_report(message: func.QueueMessage) -> None:
    # A report job, or a hub delivery or line publication a committed report queued.
    runtime.services().run_report_message(message.get_body().decode("utf-8"), delivery=message.dequeue_count or 1)


@app.function_name("report_job_gave_up")
@app.queue_trigger(arg_name="message", queue_name="%CHARGEBACK_REPORT_QUEUE%-poison", connection="ChargebackStorage")
def report_job_gave_up(message: func.QueueMessage) -> None:
    # The host moved a message here after its last delivery.
    runtime.services().give_up_report_message(message.get_body().decode("utf-8"))


@app.function_name("list_reports")
@app.route(route="reports", methods=[func.HttpMethod.GET], auth_level=SIGNED_IN)
def list_reports(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        return http.json_response(access_views.report_list(services.caller(req.headers), services.reports))

    return http.respond(handle)


@app.function_name("regenerate_report")
@app.route(route="reports/{period}", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.ADMIN)
def regenerate_report(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        # The host checked the master key; with sign-in on, the caller must also hold the admin role.
        services.caller(req.headers).require_admin()
        period = periods.parse_month(req.route_params.get("period", ""))
        job = report_jobs.request(services.report_jobs, period, "http")
        url = report_jobs.status_url(job)
        return http.json_response({**job, "status_url": url}, 202, {"Location": url})

    return http.respond(handle)


@app.function_name("correct_report")
@app.route(route="reports/{period}/corrections", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.ADMIN)
def correct_report(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        # Like regenerating: the host checked the master key; with sign-in on, the admin role too.
        caller = services.caller(req.headers)
        caller.require_admin()
        period = periods.parse_month(req.route_params.get("period", ""))
        reason, dry_run = report_corrections.parse_request(req.get_body())
        if dry_run:
            found = report_corrections.dry_run(services.reports, period, requested_by=caller.who, reason=reason)
            return http.json_response({**found.document(), "dry_run": True, "reason": reason})
        job = report_jobs.request_correction(services.report_jobs, period, caller.who, reason)
        url = report_jobs.status_url(job)
        return http.json_response({**job, "status_url": url}, 202, {"Location": url})

    return http.respond(handle)


@app.function_name("report_job")
@app.route(route="report-jobs/{id}", methods=[func.HttpMethod.GET], auth_level=SIGNED_IN)
def report_job(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        services.caller(req.headers).require_admin()
        job = report_jobs.job_status(services.report_jobs, req.route_params.get("id", ""))
        return http.json_response({**job, "status_url": report_jobs.status_url(job)})

    return http.respond(handle)


@app.function_name("report")
@app.route(route="reports/{period}", methods=[func.HttpMethod.GET], auth_level=SIGNED_IN)
def report(req: func.HttpRequest) -> func.HttpResponse:
    def handle() -> func.HttpResponse:
        services = runtime.services()
        scope = services.caller(req.headers)
        # a month (?format=…), or one of its files by name: the page links to them so
        period, fmt = report_service.parse_target(req.route_params.get("period", ""), req.params.get("format"))
        cost_center = report_service.parse_filter(req.params.get("cost_center"), "cost_center")
        found = report_service.download(
            services.reports,
            period,
            fmt,
            subscription=report_service.parse_filter(req.params.get("subscription"), "subscription"),
            cost_center=cost_center,
            cost_centers=scope.narrow(cost_center),
        )
        if found.url is not None:
            return http.redirect_response(found.url, etag=found.etag, if_none_match=req.headers.get("If-None-Match"))
        return http.file_response(
            found.data,
            content_type=found.content_type,
            filename=found.filename,
            etag=found.etag,
            if_none_match=req.headers.get("If-None-Match"),
        )

    return http.respond(handle)
