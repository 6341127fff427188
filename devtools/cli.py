"""``python -m devtools``: run the pipeline locally (demo) or send simulated gateway traffic."""

from __future__ import annotations

from collections.abc import Sequence

from chargeback.ops.cli import Commands, run_command

COMMANDS: Commands = {
    "demo": ("devtools.demo", "run the whole pipeline locally against Azurite and print what it found"),
    "simulate": ("devtools.simulate", "send simulated gateway usage events to an Event Hub or the emulator"),
    "logs-query": (
        "devtools.logs_query",
        "serve a synthetic day of LLM logs as a stand-in of the Log Analytics query API",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("python -m devtools", __doc__.splitlines()[0], COMMANDS, argv)
