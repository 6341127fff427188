#!/usr/bin/env sh
# Installs Chromium (Debian package `chromium`) for the report page test, unless it is there already.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: /usr/bin/chromium is missing and apt-get is not available; install Chromium yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
test -x /usr/bin/chromium
