"""Finds functions as registered in function_app.py and calls them the way the host does."""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from typing import Any

import azure.functions as func
import orjson

from chargeback.app import runtime
from devtools.hostshape import HostEvent, decode_batch, take_queue_messages
from devtools.local_host import registered

__all__ = ["deliver", "followed", "get", "registered"]


def deliver(events: Sequence[HostEvent], *, partition_id: str, hub: str = "aoai-usage") -> None:
    """Invoke the registered Event Hub function with a host-shaped batch."""
    user_function = registered("ingest_usage").get_user_function()
    user_function(decode_batch(events, hub=hub, partition_id=partition_id))


def get(route_function: str, url: str, route_params: dict[str, str], **params: str) -> func.HttpResponse:
    """Invoke a registered HTTP function with a GET request."""
    request = func.HttpRequest("GET", url, params=params, route_params=route_params, body=b"")
    response: func.HttpResponse = registered(route_function).get_user_function()(request)
    return response


def followed(response: func.HttpResponse) -> func.HttpResponse:
    """What a browser ends with: a redirect to a storage link is followed (to Azurite, on loopback).

    The answer keeps the function's ETag and takes the body, type and disposition storage served.
    """
    if response.status_code != 302:
        return response
    with urllib.request.urlopen(response.headers["Location"]) as fetched:  # noqa: S310 - Azurite on loopback
        body = fetched.read()
        headers = {
            "ETag": response.headers["ETag"],
            "Content-Disposition": fetched.headers["Content-Disposition"],
        }
        return func.HttpResponse(
            body, status_code=fetched.status, mimetype=fetched.headers["Content-Type"], headers=headers
        )


def post_report(period: str) -> func.HttpResponse:
    """Invoke the registered POST /api/reports/{period}: it queues a generation job."""
    request = func.HttpRequest("POST", f"/api/reports/{period}", route_params={"period": period}, body=b"")
    response: func.HttpResponse = registered("regenerate_report").get_user_function()(request)
    return response


def job(job_id: str) -> dict[str, Any]:
    """GET /api/report-jobs/{id} through the registered function, as JSON."""
    request = func.HttpRequest("GET", f"/api/report-jobs/{job_id}", route_params={"id": job_id}, body=b"")
    response: func.HttpResponse = registered("report_job").get_user_function()(request)
    document: dict[str, Any] = orjson.loads(response.get_body())
    return document


def run_queue() -> list[BaseException | None]:
    """Invoke the registered queue function on every waiting report message; what each raised."""
    outcomes: list[BaseException | None] = []
    names = runtime.services().settings.storage
    assert names.connection_string is not None
    for message in take_queue_messages(names.connection_string, names.report_queue):
        try:
            registered("generate_report").get_user_function()(message)
        except Exception as exc:  # noqa: BLE001 - the host records a failed invocation and redelivers
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes
