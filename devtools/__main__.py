"""Runs the developer command line: ``python -m devtools COMMAND``."""

from __future__ import annotations

from chargeback.interpreter import require_supported

require_supported()  # before the tools are imported: they need a supported Python to even parse

from devtools.cli import main  # noqa: E402

raise SystemExit(main())
