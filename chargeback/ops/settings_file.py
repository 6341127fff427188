"""Where an operator command's settings come from: the environment, or a Functions local settings file.

``--settings FILE`` reads the ``Values`` of a ``local.settings.json`` (the file ``func start``, the
postprovision hook and the demo write); its values win over the environment's for the names it
sets, and every other name still comes from the environment. Without it, the environment alone.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

from chargeback.app.settings import Settings
from chargeback.domain.errors import ConfigurationError

FROM_FILE = "--settings FILE reads a local.settings.json"
HELP = (
    "read settings from the Values of this Functions local settings file (local.settings.json); "
    "names it does not set come from the environment (default: the environment only)"
)


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, metavar="FILE", help=HELP)


def values(path: Path) -> dict[str, str]:
    """The ``Values`` of a local settings file, every one a string."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigurationError(f"--settings {path}: cannot be read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--settings {path}: not valid JSON (line {exc.lineno})") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("Values"), Mapping):
        raise ConfigurationError(f"--settings {path}: has no Values object, as a local.settings.json has")
    if document.get("IsEncrypted") is True:
        raise ConfigurationError(f"--settings {path}: is encrypted; decrypt it first (func settings decrypt)")
    found = document["Values"]
    for name, value in found.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"--settings {path}: Values.{name} must be a string, got {value!r}")
    return dict(found)


def environment(path: Path | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a command runs with: ``env`` (the process's by default), overlaid by the file's."""
    merged = dict(os.environ if env is None else env)
    if path is not None:
        merged.update(values(path))
    return merged


def settings(args: argparse.Namespace) -> Settings:
    """The app's settings for a command parsed with :func:`add_argument`; a bad one says where it was read."""
    path: Path | None = getattr(args, "settings", None)
    try:
        return Settings.from_env(environment(path))
    except ConfigurationError as exc:
        where = (
            f"{path} and the environment" if path else "the environment; --settings FILE reads a local.settings.json"
        )
        raise ConfigurationError(f"{exc} (settings read from {where})") from exc
