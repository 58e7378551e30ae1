#!/bin/sh
# Runs the README's dwctl walkthrough as written: every line starting with
# "$ " (with its continuation lines ending in "\") between the walkthrough
# markers, in a scratch directory, checking each exit code -- 0, or the N of
# a trailing "# exit N". The output shown in the README is not compared (it
# holds times and rates).
#
# usage: test/check-walkthrough.sh README.md path/to/dwctl
set -eu
readme=$1
dwctl=$2
command -v sqlite3 >/dev/null 2>&1 || {
    echo "check-walkthrough: the sqlite3 shell is missing (apt-get install sqlite3)" >&2
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
ln -s "$(cd "$(dirname "$dwctl")" && pwd)/$(basename "$dwctl")" "$tmp/bin/dwctl"

# One shell script: each command, its expected code, the README line.
awk '
    /<!-- walkthrough: begin -->/ { on = 1; next }
    /<!-- walkthrough: end -->/ { on = 0 }
    !on { next }
    !cmd && /^\$ / { cmd = substr($0, 3); line = NR; cont = /\\$/; if (!cont) emit(); next }
    cmd && cont { cmd = cmd "\n" $0; cont = /\\$/; if (!cont) emit(); next }
    function emit(   want) {
        want = 0
        if (match(cmd, /# exit [0-9]+$/)) {
            want = substr(cmd, RSTART + 7)
            cmd = substr(cmd, 1, RSTART - 1)
        }
        printf "{ %s\n} >out 2>&1\nrc=$?\n", cmd
        printf "if [ $rc -ne %d ]; then cat out; echo \"check-walkthrough: README.md line %d exited $rc, expected %d\" >&2; exit 1; fi\n", want, line, want
        printf "n=$((n + 1))\n"
        cmd = ""
    }
' "$readme" > "$tmp/walk.sh"
grep -q dwctl "$tmp/walk.sh" || { echo "check-walkthrough: no walkthrough found in $readme" >&2; exit 1; }
(cd "$tmp" && PATH="$tmp/bin:$PATH" n=0 sh -c '. ./walk.sh; echo "check-walkthrough: the README walkthrough runs as written ($n commands)"')
