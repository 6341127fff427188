"""Plays the Storage queue trigger as the Functions host does: leases, dequeue counts, retries, poison.

The host takes a message off the queue under a lease (it stays invisible while the function
runs), hands it to the function through ``azure.functions``' queue converter with its
``DequeueCount``, deletes it when the function returns, and when the function raises makes it
visible again after ``visibilityTimeout``; once a message has failed ``maxDequeueCount`` times
(or comes back with a higher count, after a crash) it is moved to ``<queue>-poison`` instead.
Both numbers are read from ``host.json``, as the host reads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter
from azure.storage.queue import QueueClient, QueueMessage, TextBase64DecodePolicy, TextBase64EncodePolicy

from chargeback.app.runtime import APP_ROOT

logger = logging.getLogger(__name__)

POISON_SUFFIX = "-poison"
LEASE = timedelta(minutes=10)
"""How long a message stays invisible while its function runs (the host renews its lease; one run fits)."""
POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """The host's queue options: ``extensions.queues`` in host.json."""

    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    batch_size: int = 16

    @classmethod
    def from_host_json(cls, path: Path = APP_ROOT / "host.json") -> QueueOptions:
        queues = json.loads(path.read_text(encoding="utf-8")).get("extensions", {}).get("queues", {})
        hours, minutes, seconds = (int(part) for part in str(queues.get("visibilityTimeout", "00:00:00")).split(":"))
        return cls(
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=timedelta(hours=hours, minutes=minutes, seconds=seconds),
            batch_size=int(queues.get("batchSize", 16)),
        )


@dataclass
class Played:
    """What the queue's messages came to so far."""

    succeeded: int = 0
    failed: int = 0
    """Invocations that raised; their messages come back after the visibility timeout."""
    poisoned: int = 0


QueueFunction = Callable[[func.QueueMessage], None]


class QueueTrigger:
    """One queue and the function it triggers; :meth:`poll` once, or :meth:`start` a polling thread."""

    def __init__(
        self, connection_string: str, queue_name: str, function: QueueFunction, options: QueueOptions | None = None
    ) -> None:
        self._queue = QueueClient.from_connection_string(
            connection_string,
            queue_name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        self._poison = QueueClient.from_connection_string(
            connection_string, queue_name + POISON_SUFFIX, message_encode_policy=TextBase64EncodePolicy()
        )
        self._function = function
        self.options = options or QueueOptions.from_host_json()
        self.played = Played()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> int:
        """Take the messages visible now, one at a time, as the host would; how many were taken."""
        taken = 0
        for message in self._queue.receive_messages(
            max_messages=self.options.batch_size, visibility_timeout=int(LEASE.total_seconds())
        ):
            taken += 1
            self._deliver(message)
        return taken

    def drain(self) -> int:
        """Poll until a poll finds nothing visible; messages that failed wait out their visibility timeout."""
        total = 0
        while taken := self.poll():
            total += taken
        return total

    def _deliver(self, message: QueueMessage) -> None:
        tries = message.dequeue_count or 1
        if tries > self.options.max_dequeue_count:
            self._to_poison(message)  # failed as often as allowed already (the last try died with its host)
            return
        try:
            self._function(_decoded(message))
        except Exception:  # as the host does: the failed invocation is logged and the message retried
            logger.exception("queue %s: message %s failed on try %d", self._queue.queue_name, message.id, tries)
            self.played.failed += 1
            if tries >= self.options.max_dequeue_count:
                self._to_poison(message)
            else:
                self._queue.update_message(  # visibility only: the content stays as the sender wrote it
                    message.id,
                    pop_receipt=message.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout.total_seconds()),
                )
            return
        self._queue.delete_message(message)
        self.played.succeeded += 1

    def _to_poison(self, message: QueueMessage) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        self._poison.send_message(message.content)
        self._queue.delete_message(message)
        self.played.poisoned += 1

    def start(self) -> QueueTrigger:
        """Poll in a background thread until :meth:`stop`, the way the host listens while it runs."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name=f"queue-{self._queue.queue_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; a function still running is given ``timeout`` seconds (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                taken = self.poll()
            except Exception:  # storage went away (the demo stopping): log it, keep listening until told
                logger.exception("queue %s: polling failed", self._queue.queue_name)
                taken = 0
            if not taken:
                self._stop.wait(POLL_SECONDS)

    def __enter__(self) -> QueueTrigger:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _decoded(message: QueueMessage) -> func.QueueMessage:
    """The message as the worker hands it over: its text, and the host's metadata, through the converter."""
    metadata = {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(message.dequeue_count, "int"),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
        "InsertionTime": meta.Datum(_utc_text(message.inserted_on), "string"),
        "ExpirationTime": meta.Datum(_utc_text(message.expires_on), "string"),
        "NextVisibleTime": meta.Datum(_utc_text(message.next_visible_on), "string"),
    }
    decoded = QueueMessageInConverter.decode(meta.Datum(message.content, "string"), trigger_metadata=metadata)
    if not isinstance(decoded, func.QueueMessage):
        raise TypeError("the queue converter did not decode a message")
    return decoded


def _utc_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")
