"""Runs the developer command line: ``python -m devtools COMMAND``."""

from __future__ import annotations

from devtools.cli import main

raise SystemExit(main())
