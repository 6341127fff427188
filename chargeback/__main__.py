"""Runs the command line: ``python -m chargeback COMMAND``."""

from __future__ import annotations

from chargeback.ops.cli import main

raise SystemExit(main())
