"""``python -m chargeback``: the command line for the demo, the simulator and the recovery tools.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so one command's dependencies never slow
another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("chargeback.demo", "run the whole pipeline locally against Azurite and print what it found"),
    "simulate": ("chargeback.simulate", "send simulated gateway usage events to an Event Hub or the emulator"),
    "redrive": ("chargeback.redrive", "re-apply dead-lettered events after their cause is fixed"),
    "replay": ("chargeback.replay", "apply Event Hubs Capture files through the ledger, counting nothing twice"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chargeback", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        if name in _requested(argv):
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(argv)
    code: int = importlib.import_module(args.module).run(args)
    return code


def _requested(argv: Sequence[str] | None) -> set[str]:
    words = sys.argv[1:] if argv is None else argv
    return {word for word in words if word in COMMANDS}


if __name__ == "__main__":
    raise SystemExit(main())
