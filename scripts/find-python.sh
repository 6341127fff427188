#!/usr/bin/env sh
# Prints the path of a Python of one of the versions given (e.g. `3.13`, or `3.12 3.13 3.14`: the
# first found wins). Looks at python3.MINOR on PATH, then pyenv's versions; with pyenv and none
# found, asks pyenv to install the first version given. Exits 1, saying so, when there is none.
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: find-python.sh 3.MINOR [3.MINOR ...]" >&2
    exit 2
fi

# works PYTHON 3.MINOR: that interpreter runs, is that version and has venv
works() {
    [ -n "$1" ] && "$1" -c "import sys, venv; sys.exit(sys.version_info[:2] != tuple(map(int, '$2'.split('.'))))" \
        >/dev/null 2>&1
}

found() {
    command -v "$1" 2>/dev/null || printf '%s\n' "$1"
}

# a pyenv shim answers for every version pyenv has, but runs only the selected ones: try each
for version in "$@"; do
    if works "python$version" "$version"; then
        found "python$version"
        exit 0
    fi
done

# pyenv, on PATH or where its installer puts it
pyenv=$(command -v pyenv 2>/dev/null || printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv")

# pyenv's installed versions of 3.MINOR, newest first, as paths of their python3
pyenv_pythons() {
    "$pyenv" versions --bare --skip-aliases 2>/dev/null | grep -E "^$(echo "$1" | sed 's/\./\\./')\.[0-9]+$" |
        sort -t. -k3,3nr |
        while read -r installed; do printf '%s\n' "$("$pyenv" root)/versions/$installed/bin/python3"; done
}

# prints the first of pyenv's Pythons of the versions given that works; fails when none does
pyenv_python() {
    for version in "$@"; do
        for candidate in $(pyenv_pythons "$version"); do
            if works "$candidate" "$version"; then
                printf '%s\n' "$candidate"
                return 0
            fi
        done
    done
    return 1
}

if [ -x "$pyenv" ]; then
    pyenv_python "$@" && exit 0
    echo "find-python: no Python $* in pyenv; running 'pyenv install --skip-existing $1'" >&2
    "$pyenv" install --skip-existing "$1" >&2 && pyenv_python "$@" && exit 0
fi

echo "find-python: no Python $* was found on PATH or in pyenv; install one (pyenv install $1, or your system's python$1 package with its venv module)." >&2
exit 1
