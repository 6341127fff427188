#!/usr/bin/env sh
# Prints the path of a Python 3.12 or newer for the FOCUS validator's own venv (the validator
# needs >= 3.12, the app runs on 3.11). Looks at FOCUS_PYTHON, then python3.12 / python3.13 on
# PATH, then pyenv's versions; with pyenv and none found, asks pyenv to install 3.12.
set -eu

works() {
    [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

found() {
    command -v "$1" 2>/dev/null || printf '%s\n' "$1"
}

if [ -n "${FOCUS_PYTHON:-}" ]; then
    if works "$FOCUS_PYTHON"; then
        found "$FOCUS_PYTHON"
        exit 0
    fi
    echo "focus-python: FOCUS_PYTHON=$FOCUS_PYTHON is not a Python 3.12 or newer with venv" >&2
    exit 1
fi

# a pyenv shim answers for every version pyenv has, but runs only the selected ones: try each
for candidate in python3.12 python3.13 python3.14; do
    if works "$candidate"; then
        found "$candidate"
        exit 0
    fi
done

# pyenv, on PATH or where its installer puts it
pyenv=$(command -v pyenv 2>/dev/null || printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv")

# pyenv's installed versions of 3.MINOR, newest first, as paths of their python3
pyenv_pythons() {
    "$pyenv" versions --bare --skip-aliases 2>/dev/null | grep -E "^3\.$1\.[0-9]+$" | sort -t. -k3,3nr |
        while read -r version; do printf '%s\n' "$("$pyenv" root)/versions/$version/bin/python3"; done
}

# prints the first of pyenv's Pythons 3.12, 3.13, 3.14 that works; fails when none does
pyenv_python() {
    for minor in 12 13 14; do
        for candidate in $(pyenv_pythons "$minor"); do
            if works "$candidate"; then
                printf '%s\n' "$candidate"
                return 0
            fi
        done
    done
    return 1
}

if [ -x "$pyenv" ]; then
    pyenv_python && exit 0
    echo "focus-python: no Python 3.12 or newer in pyenv; running 'pyenv install --skip-existing 3.12'" >&2
    "$pyenv" install --skip-existing 3.12 >&2 && pyenv_python && exit 0
fi

cat >&2 <<'EOF'
focus-python: the FOCUS validator (a test tool, never deployed) needs Python 3.12 or newer, and
none was found. Install one (`pyenv install 3.12`, or your system's python3.12 package with its
venv module), or point FOCUS_PYTHON at one, then run `make test` again.
EOF
exit 1
