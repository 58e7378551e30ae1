#!/bin/sh
# Installs into a scratch prefix, then builds and runs a program against it
# with pkg-config alone, as a user of the installed library would.
set -eu
MAKE=${1:-make}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$MAKE --no-print-directory -s install PREFIX="$tmp/prefix" >/dev/null
for f in include/dualwrite.h include/dualwrite_cmocka.h lib/libdualwrite.a lib/libdualwrite.so lib/libdualwrite.so.0 lib/pkgconfig/dualwrite.pc bin/dwctl share/man/man1/dwctl.1; do
    [ -e "$tmp/prefix/$f" ] || { echo "check-install: $f not installed" >&2; exit 1; }
done
cat > "$tmp/prog.c" <<'PROG'
#include <dualwrite.h>
#include <stdio.h>
#include <string.h>
/* Uses SQLite directly too, as every user does: the .pc must link both. */
int main(void)
{
    sqlite3 *db = NULL;
    if (strcmp(dw_version(), DW_VERSION) != 0) return 1;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
    int stage = -1;
    if (dw_stage_parse(&stage, "shadow") != DW_OK || stage != DW_STAGE_SHADOW) return 1;
    sqlite3_close(db);
    printf("linked libdualwrite %s with SQLite %s\n", dw_version(), sqlite3_libversion());
    return 0;
}
PROG
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
${CC:-cc} -o "$tmp/prog" "$tmp/prog.c" $(pkg-config --cflags --libs dualwrite)
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/prog"
LD_LIBRARY_PATH="$tmp/prefix/lib" ldd "$tmp/prog" | grep -q "$tmp/prefix/lib/libdualwrite.so.0" \
    || { echo "check-install: program did not load the installed shared library" >&2; exit 1; }
# The installed tool runs, and its man page is a man page.
"$tmp/prefix/bin/dwctl" --version | grep -q "^dwctl " \
    || { echo "check-install: the installed dwctl does not run" >&2; exit 1; }
grep -q '^\.TH DWCTL 1' "$tmp/prefix/share/man/man1/dwctl.1" \
    || { echo "check-install: dwctl.1 is not the man page" >&2; exit 1; }
# Put back the tree's own dualwrite.pc, which install rewrote for $tmp.
$MAKE --no-print-directory -s dualwrite.pc
echo "check-install: install into a prefix and a pkg-config build work"
