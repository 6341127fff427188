"""Finds functions as registered in function_app.py and calls them the way the host does."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import azure.functions as func

import function_app
from devtools.hostshape import HostEvent, decode_batch


@functools.cache
def _functions() -> dict[str, Any]:
    # The app builds its functions once, as the worker's indexing does; building twice fails.
    return {function.get_function_name(): function for function in function_app.app.get_functions()}


def registered(name: str) -> Any:
    """The function object registered under ``name`` in the app."""
    try:
        return _functions()[name]
    except KeyError:
        raise LookupError(f"no function named {name}") from None


def deliver(events: Sequence[HostEvent], *, partition_id: str, hub: str = "aoai-usage") -> None:
    """Invoke the registered Event Hub function with a host-shaped batch."""
    user_function = registered("ingest_usage").get_user_function()
    user_function(decode_batch(events, hub=hub, partition_id=partition_id))


def get(route_function: str, url: str, route_params: dict[str, str], **params: str) -> func.HttpResponse:
    """Invoke a registered HTTP function with a GET request."""
    request = func.HttpRequest("GET", url, params=params, route_params=route_params, body=b"")
    response: func.HttpResponse = registered(route_function).get_user_function()(request)
    return response
