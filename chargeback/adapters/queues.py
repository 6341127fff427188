"""Report jobs on an Azure Storage queue, which the queue-triggered function reads."""

from __future__ import annotations

from azure.storage.queue import QueueClient

from chargeback.adapters.storage import translated


class StorageJobQueue:
    """``JobQueue`` on one Storage queue (created by the runtime before first use)."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    def send(self, message: str) -> None:
        with translated("queue a report job"):
            self._queue.send_message(message)
