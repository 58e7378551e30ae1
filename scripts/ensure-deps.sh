#!/bin/sh
# Checks that what a build needs is present, and names the exact Debian
# packages of whatever is missing. Only with --install (which `make demo`
# and `make test` pass, the README's two set-up commands) does it install
# them, and only as root on a machine with apt-get; every other target
# stops with the list.
#
# usage: scripts/ensure-deps.sh [--install] library|test|valgrind|fuzz
#   library   the headers of SQLite and uthash
#   test      those, cmocka, pkg-config and the sqlite3 shell
#   valgrind  valgrind
#   fuzz      $FUZZ_CC (clang) able to build a libFuzzer target with ASan
#             and UBSan
set -eu
install=no
if [ "${1:-}" = --install ]; then
    install=yes
    shift
fi
want=${1:-library}
CC=${CC:-cc}
FUZZ_CC=${FUZZ_CC:-clang}

have_header() {
    printf '#include <%s>\n' "$1" | $CC -E -x c - >/dev/null 2>&1
}
have_cmocka() {
    printf '#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <setjmp.h>\n#include <cmocka.h>\n' \
        | $CC -E -x c - >/dev/null 2>&1
}
have_libfuzzer() {
    probe_dir=$(mktemp -d)
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        | $FUZZ_CC -fsanitize=fuzzer,address,undefined -x c - -o "$probe_dir/probe" >/dev/null 2>&1
    probe_rc=$?
    rm -rf "$probe_dir"
    return $probe_rc
}

# Sets $missing to the packages that the wanted set lacks.
find_missing() {
    missing=""
    case $want in
    library|test)
        have_header sqlite3.h || missing="$missing libsqlite3-dev"
        have_header uthash.h || missing="$missing uthash-dev"
        ;;
    esac
    if [ "$want" = test ]; then
        have_cmocka || missing="$missing libcmocka-dev"
        command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
        # The README's dwctl walkthrough sets up its tables with the shell.
        command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
    fi
    if [ "$want" = valgrind ]; then
        command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
    fi
    if [ "$want" = fuzz ]; then
        have_libfuzzer || missing="$missing clang libclang-rt-14-dev"
    fi
    return 0
}

find_missing
[ -z "$missing" ] && exit 0

if [ "$install" = yes ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >&2
    find_missing
    [ -z "$missing" ] && exit 0
    echo "ensure-deps: still missing after apt-get:$missing" >&2
    exit 1
fi
echo "ensure-deps: missing packages:$missing" >&2
echo "ensure-deps: install them with: sudo apt-get install$missing" >&2
case $install/$want in
no/library|no/test)
    echo "ensure-deps: (\`make demo\` and \`make test\`, run as root, install them themselves)" >&2 ;;
esac
exit 1
