#!/bin/sh
# Checks that the headers the build needs are present. As root on a Debian
# machine it installs what is missing with apt-get; otherwise it names the
# exact packages and fails.
#
# usage: scripts/ensure-deps.sh [library|test]   (test also needs cmocka)
set -eu
want=${1:-library}
CC=${CC:-cc}

have_header() {
    printf '#include <%s>\n' "$1" | $CC -E -x c - >/dev/null 2>&1
}
have_cmocka() {
    printf '#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <setjmp.h>\n#include <cmocka.h>\n' \
        | $CC -E -x c - >/dev/null 2>&1
}

missing=""
have_header sqlite3.h || missing="$missing libsqlite3-dev"
have_header uthash.h || missing="$missing uthash-dev"
if [ "$want" = test ]; then
    have_cmocka || missing="$missing libcmocka-dev"
    command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
    # The README's dwctl walkthrough sets up its tables with the shell.
    command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >&2
    exit 0
fi
echo "ensure-deps: missing packages:$missing" >&2
echo "ensure-deps: install them with: sudo apt-get install$missing" >&2
exit 1
