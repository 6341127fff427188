"""Entry points of the processes that race report generations (spawned, not forked)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import azure.functions as func
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from chargeback.app import runtime
from tests.functions import registered


def _configure(settings: dict[str, str], moment: str) -> None:
    os.environ.update(settings)
    runtime.reset()
    at = datetime.fromisoformat(moment)
    runtime.services().clock = lambda: at


def regenerate(settings: dict[str, str], moment: str, period: str, barrier: Barrier, answers: Queue[int]) -> None:
    """POST the period's report through the registered function once the rivals are ready."""
    _configure(settings, moment)
    request = func.HttpRequest("POST", f"/api/reports/{period}", route_params={"period": period}, body=b"")
    barrier.wait()
    response: func.HttpResponse = registered("regenerate_report").get_user_function()(request)
    answers.put(response.status_code)


def run_timer(settings: dict[str, str], moment: str, barrier: Barrier, answers: Queue[int]) -> None:
    """Run the registered timer function once the rivals are ready; 0 when it raised nothing."""
    _configure(settings, moment)
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
    barrier.wait()
    registered("reconcile_and_report").get_user_function()(timer)
    answers.put(0)
