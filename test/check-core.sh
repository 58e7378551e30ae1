#!/bin/sh
# The core (lib/*.c, lib/*.h) is the same for every backend: it names no
# SQLite symbol and includes no backend's header. Everything SQLite's is
# under lib/sqlite/. Run from the repository root.
set -eu
status=0
named=$(grep -l 'sqlite3\|SQLITE\|dw__sqlite' lib/*.c lib/*.h || true)
if [ -n "$named" ]; then
    echo "check-core: these core files name SQLite (move the code to lib/sqlite/):" >&2
    grep -n 'sqlite3\|SQLITE\|dw__sqlite' $named >&2
    status=1
fi
backend=$(grep -l '#include *"[a-z]*/' lib/*.c lib/*.h || true)
if [ -n "$backend" ]; then
    echo "check-core: these core files include a backend's header:" >&2
    grep -n '#include *"[a-z]*/' $backend >&2
    status=1
fi
[ $status -eq 0 ] && echo "check-core: lib/ names no SQLite symbol; the SQLite backend is lib/sqlite/ ($(ls lib/sqlite/*.c | wc -l) files)"
exit $status
