"""Entry points of the processes that race report generations (spawned, not forked)."""

from __future__ import annotations

import os
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter

from chargeback.app import runtime
from tests.functions import post_report, registered


def _configure(settings: dict[str, str], moment: str) -> None:
    os.environ.update(settings)
    runtime.reset()
    at = datetime.fromisoformat(moment)
    runtime.services().clock = lambda: at


def post(settings: dict[str, str], moment: str, period: str, barrier: Barrier, answers: Queue[int]) -> None:
    """POST the period through the registered function once the rivals are ready."""
    _configure(settings, moment)
    barrier.wait()
    answers.put(post_report(period).status_code)


def work(settings: dict[str, str], moment: str, contents: list[str], barrier: Barrier, answers: Queue[int]) -> None:
    """Run the registered queue function on each message once the rivals are ready; 0 when none raised."""
    _configure(settings, moment)
    messages = [
        QueueMessageInConverter.decode(meta.Datum(content, "string"), trigger_metadata={}) for content in contents
    ]
    barrier.wait()
    for message in messages:
        registered("generate_report").get_user_function()(message)
    answers.put(0)


def stalled(settings: dict[str, str], moment: str, content: str, dequeue_count: int, reached: str) -> None:
    """Run the registered queue function on a message, but stall for good once the generation has
    written its first file: the process is killed there, as the host ends an invocation."""
    from pathlib import Path
    from threading import Event

    from chargeback.adapters.blobs import BlobReportStore

    _configure(settings, moment)
    put_file = BlobReportStore.put_file

    def put_then_stall(self: BlobReportStore, *args: object, **kwargs: object) -> None:
        put_file(self, *args, **kwargs)  # type: ignore[arg-type]
        Path(reached).write_text("mid-way")
        Event().wait()

    BlobReportStore.put_file = put_then_stall  # type: ignore[method-assign]
    metadata = {"DequeueCount": meta.Datum(dequeue_count, "int")}
    message = QueueMessageInConverter.decode(meta.Datum(content, "string"), trigger_metadata=metadata)
    registered("generate_report").get_user_function()(message)
