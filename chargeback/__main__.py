"""Runs the command line: ``python -m chargeback COMMAND``."""

from __future__ import annotations

from chargeback.interpreter import require_supported

require_supported()  # before the commands are imported: they need a supported Python to even parse

from chargeback.ops.cli import main  # noqa: E402

raise SystemExit(main())
