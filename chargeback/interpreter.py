"""Which Pythons the app runs on, and one clear sentence (exit 2) on any other.

Kept free of anything newer than Python 3.7 can parse: it runs before the rest of the package,
which needs 3.11, is imported, so that ``make``, ``python -m chargeback`` and ``python -m devtools``
can say what is wrong instead of failing on a syntax error or a ``pip`` resolution.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

SUPPORTED: tuple[tuple[int, int], ...] = ((3, 11), (3, 12), (3, 13))
"""Versions Azure Functions runs (Flex Consumption) that every pinned package installs on, each tested."""


def names() -> str:
    """``3.11, 3.12 or 3.13``."""
    versions = [f"{major}.{minor}" for major, minor in SUPPORTED]
    return ", ".join(versions[:-1]) + " or " + versions[-1]


def problem(version: Sequence[int] | None = None, executable: str | None = None) -> str | None:
    """None when ``version`` (this interpreter's by default) is supported, else the sentence to print."""
    major, minor = tuple((sys.version_info if version is None else version)[:2])
    if (major, minor) in SUPPORTED:
        return None
    where = executable or sys.executable or "python"
    return (
        f"This is Python {major}.{minor} ({where}), but the chargeback app runs on Python {names()} only: "
        f"install one of them and run again with it (for make: make PYTHON=python3.13 ...)."
    )


def require_supported() -> None:
    """Exit with code 2 and the sentence on an unsupported interpreter; return otherwise."""
    message = problem()
    if message is not None:
        sys.stderr.write(message + "\n")
        raise SystemExit(2)


if __name__ == "__main__":
    require_supported()
