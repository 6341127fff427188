#!/usr/bin/env sh
# Prints the path of a Python 3.12 or newer for the FOCUS validator's own venv (the validator
# needs >= 3.12, whatever Python the app's venv has). Looks at FOCUS_PYTHON, then asks
# find-python.sh for 3.12, 3.13 or 3.14 (PATH, then pyenv, which installs 3.12 if it has none).
set -eu

if [ -n "${FOCUS_PYTHON:-}" ]; then
    if "$FOCUS_PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
        command -v "$FOCUS_PYTHON" 2>/dev/null || printf '%s\n' "$FOCUS_PYTHON"
        exit 0
    fi
    echo "focus-python: FOCUS_PYTHON=$FOCUS_PYTHON is not a Python 3.12 or newer with venv" >&2
    exit 1
fi

sh "$(dirname "$0")/find-python.sh" 3.12 3.13 3.14 && exit 0

cat >&2 <<'MESSAGE'
focus-python: the FOCUS validator (a test tool, never deployed) needs Python 3.12 or newer, and
none was found. Install one (`pyenv install 3.12`, or your system's python3.12 package with its
venv module), or point FOCUS_PYTHON at one, then run `make test` again.
MESSAGE
exit 1
