"""Starts and stops a local Azurite (npm package) in memory on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from chargeback.app import settings
from chargeback.domain.errors import ConfigurationError

HOST = "127.0.0.1"
ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key: it opens nothing but a local emulator.
DEVELOPMENT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
READY_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _accepting(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((HOST, port)) == 0


@dataclass
class Azurite:
    """A running Azurite; use as a context manager or call ``start``/``stop``."""

    project_root: Path
    blob_port: int = field(default_factory=free_port)
    queue_port: int = field(default_factory=free_port)
    table_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def executable(self) -> Path:
        return self.project_root.resolve() / "node_modules" / ".bin" / "azurite"

    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{ACCOUNT}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEVELOPMENT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def app_settings(self, suffix: str = "") -> dict[str, str]:
        """The app's settings against this emulator; a suffix gives tables and containers of their own."""
        values = dict(settings.DEFAULTS)
        values[settings.STORAGE_CONNECTION] = self.connection_string
        if suffix:
            for name in (
                settings.LEDGER_TABLE,
                settings.DEAD_LETTER_TABLE,
                settings.RECONCILIATION_TABLE,
                settings.BUDGET_TABLE,
            ):
                values[name] += suffix
            for name in (settings.REPORTS_CONTAINER, settings.DEAD_LETTER_CONTAINER, settings.REPORT_QUEUE):
                values[name] += f"-{suffix}"
        return values

    def start(self) -> Azurite:
        if not self.executable.exists():
            raise ConfigurationError(f"{self.executable} is missing: run `npm ci` in {self.project_root}")
        if shutil.which("node") is None:
            raise ConfigurationError("Node.js is required to run Azurite")
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        command = [
            str(self.executable),
            "--inMemoryPersistence",
            "--silent",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--blobHost",
            HOST,
            "--queueHost",
            HOST,
            "--tableHost",
            HOST,
            "--blobPort",
            str(self.blob_port),
            "--queuePort",
            str(self.queue_port),
            "--tablePort",
            str(self.table_port),
        ]
        self._process = subprocess.Popen(  # noqa: S603 - a fixed command line
            command,
            cwd=self._workdir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        ports = (self.blob_port, self.queue_port, self.table_port)
        while not all(_accepting(port) for port in ports):
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise ConfigurationError(f"Azurite exited with {self._process.returncode}: {error[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigurationError(f"Azurite did not listen within {READY_TIMEOUT_SECONDS} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kill the emulator's process group at once: its data lives in memory and is meant to go."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
