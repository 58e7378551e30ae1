#!/bin/sh
# Run by `make install` (not into a DESTDIR): makes sure programs linked
# with -ldualwrite find the shared library at run time. When LIBDIR is a
# directory the dynamic loader searches, root refreshes the loader's cache
# with ldconfig (until then the new library's soname is not in it); else
# it says how to point the loader at LIBDIR.
#
# usage: scripts/loader-cache.sh LIBDIR
set -eu
libdir=$1
ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)

# Whether the loader's configuration names LIBDIR (compared as real paths:
# /lib is /usr/lib on a merged-/usr system).
searched() {
    want=$(cd "$libdir" && pwd -P)
    "$ldconfig" -v -N -X 2>/dev/null | sed -n 's/^\(\/[^:]*\):.*/\1/p' > "$list"
    while read -r dir; do
        [ -d "$dir" ] && [ "$(cd "$dir" && pwd -P)" = "$want" ] && return 0
    done < "$list"
    return 1
}

list=$(mktemp)
trap 'rm -f "$list"' EXIT
if ! searched; then
    echo "install: the dynamic loader does not search $libdir: run programs"
    echo "install: linked with -ldualwrite with LD_LIBRARY_PATH=$libdir"
elif [ "$(id -u)" = 0 ]; then
    "$ldconfig"
    echo "install: ran ldconfig, so the loader finds libdualwrite in $libdir"
else
    echo "install: run \`sudo ldconfig\` once, so the loader finds libdualwrite in $libdir"
fi
