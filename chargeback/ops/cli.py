"""``python -m chargeback``: the operator commands (redrive, replay, prices, correct).

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so one command's dependencies never slow
another. The developer tools (``python -m devtools``) use the same runner with their own table.
A configuration or storage error ends a command with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence

from chargeback.domain.errors import AccessDeniedError, ChargebackError
from chargeback.ops import settings_file

Commands = Mapping[str, tuple[str, str]]

COMMANDS: Commands = {
    "redrive": ("chargeback.ops.redrive", "re-apply dead-lettered events after their cause is fixed"),
    "replay": ("chargeback.ops.replay", "apply Event Hubs Capture files through the ledger, counting nothing twice"),
    "prices": ("chargeback.ops.prices", "compare the price sheet with Azure's retail prices, or bring it up to date"),
    "correct": ("chargeback.ops.correct", "re-price and re-map a final month; bill the difference in the next report"),
}

_REDRIVE_ROLES = (
    ("Storage Table Data Contributor", "the usageledger and usagedeadletters tables"),
    ("Storage Blob Data Contributor", "the deadletters container"),
)
ROLE_GRANTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "redrive": _REDRIVE_ROLES,
    "replay": (*_REDRIVE_ROLES, ("Storage Blob Data Reader", "the capture container")),
    "correct": (
        ("Storage Blob Data Contributor", "the reports container"),
        ("Storage Table Data Contributor", "the usageledger and usagereconciliation tables"),
        ("Log Analytics Data Reader", "the workspace's AppMetrics and API Management log tables"),
    ),
}
"""The Azure data roles each command needs on the data storage account, for whoever runs it: (role, scope)."""


def _in_words(grants: tuple[tuple[str, str], ...]) -> str:
    said = [f"{role} on {scope}" for role, scope in grants]
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else said[0]


ROLES: Mapping[str, str] = {command: _in_words(grants) for command, grants in ROLE_GRANTS.items()}
"""``ROLE_GRANTS`` in words, as ``--help`` and a refused command say them."""

EPILOG = """\
settings:
  The commands read the app's own settings: redrive and replay ChargebackStorage (a connection
  string) or ChargebackStorage__tableServiceUri and ChargebackStorage__blobServiceUri (your Azure
  sign-in, az login), the table and container names, EVENTHUB_NAME and CHARGEBACK_LLM_LOG_SCOPE;
  correct the same and the report settings (price sheet, cost-center map, Log Analytics);
  prices CHARGEBACK_PRICE_SHEET. They come from the environment, or with --settings FILE from the
  Values of a Functions local settings file (local.settings.json, as func start, the
  postprovision hook and the demo write it).

Azure roles (data roles of whoever runs the command, on the data storage account):
{roles}
  prices   none: Azure's retail price list is public.
  No app role (Chargeback.Admin) is involved: these commands do not go through the HTTP API.

Exit codes: 0 done, 1 done but something is still dead-lettered (redrive) or the sheet is behind
(prices check), 2 a setting, the command line or storage stopped the command (one line on stderr
says which).
""".format(
    roles="\n".join(
        textwrap.fill(f"{name:<8} {roles}.", width=100, initial_indent="  ", subsequent_indent="           ")
        for name, roles in ROLES.items()
    )
)


def run_command(
    prog: str,
    description: str,
    commands: Commands,
    argv: Sequence[str] | None = None,
    *,
    epilog: str | None = None,
    common: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse ``argv`` against ``commands`` and run the chosen one, importing only its module.

    ``common`` adds the options every command takes. A ``ChargebackError`` the command raises
    (a missing setting, a storage failure) is printed as one line and ends it with exit code 2.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=formatter)
    sub_parsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    requested = _requested(commands, argv)
    for name, (module_name, help_text) in commands.items():
        sub = sub_parsers.add_parser(
            name, help=help_text, description=help_text, epilog=epilog, formatter_class=formatter
        )
        sub.set_defaults(module=module_name)
        if common is not None:
            common(sub)
        if name in requested:
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(argv)
    try:
        code: int = importlib.import_module(args.module).run(args)
    except ChargebackError as exc:
        print(f"{prog} {args.command}: {_one_line(exc)}{_roles_hint(args.command, exc)}", file=sys.stderr)
        return 2
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(
        "python -m chargeback",
        __doc__.splitlines()[0],
        COMMANDS,
        argv,
        epilog=EPILOG,
        common=settings_file.add_argument,
    )


def _requested(commands: Commands, argv: Sequence[str] | None) -> set[str]:
    words = sys.argv[1:] if argv is None else argv
    return {word for word in words if word in commands}


def _roles_hint(command: str, exc: ChargebackError) -> str:
    """When storage refused the caller, what the command needs: the fix is a role, not a retry."""
    if isinstance(exc, AccessDeniedError) and command in ROLES:
        return f" ({command} needs {ROLES[command]})"
    return ""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
