"""``python -m chargeback``: the operator commands (redrive, replay, prices, correct).

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so one command's dependencies never slow
another. The developer tools (``python -m devtools``) use the same runner with their own table.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

Commands = Mapping[str, tuple[str, str]]

COMMANDS: Commands = {
    "redrive": ("chargeback.ops.redrive", "re-apply dead-lettered events after their cause is fixed"),
    "replay": ("chargeback.ops.replay", "apply Event Hubs Capture files through the ledger, counting nothing twice"),
    "prices": ("chargeback.ops.prices", "compare the price sheet with Azure's retail prices, or bring it up to date"),
    "correct": ("chargeback.ops.correct", "re-price and re-map a final month; bill the difference in the next report"),
}


def run_command(prog: str, description: str, commands: Commands, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` against ``commands`` and run the chosen one, importing only its module."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub_parsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    requested = _requested(commands, argv)
    for name, (module_name, help_text) in commands.items():
        sub = sub_parsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        if name in requested:
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(argv)
    code: int = importlib.import_module(args.module).run(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("python -m chargeback", __doc__.splitlines()[0], COMMANDS, argv)


def _requested(commands: Commands, argv: Sequence[str] | None) -> set[str]:
    words = sys.argv[1:] if argv is None else argv
    return {word for word in words if word in commands}
