"""Finds functions as registered in function_app.py and calls them the way the host does."""

from __future__ import annotations

from collections.abc import Sequence

import azure.functions as func

from devtools.hostshape import HostEvent, decode_batch
from devtools.local_host import registered

__all__ = ["deliver", "get", "registered"]


def deliver(events: Sequence[HostEvent], *, partition_id: str, hub: str = "aoai-usage") -> None:
    """Invoke the registered Event Hub function with a host-shaped batch."""
    user_function = registered("ingest_usage").get_user_function()
    user_function(decode_batch(events, hub=hub, partition_id=partition_id))


def get(route_function: str, url: str, route_params: dict[str, str], **params: str) -> func.HttpResponse:
    """Invoke a registered HTTP function with a GET request."""
    request = func.HttpRequest("GET", url, params=params, route_params=route_params, body=b"")
    response: func.HttpResponse = registered(route_function).get_user_function()(request)
    return response
