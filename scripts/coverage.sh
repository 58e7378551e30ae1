#!/bin/sh
# Line and branch coverage of lib/ from a build made with --coverage whose
# tests have run. Writes one annotated .gcov file per source file of lib/ and
# its backend folders into BUILD/gcov, named by its path with '#' for '/'
# (lib#sqlite#state.c.gcov; uncovered lines are marked #####), and prints
# per-file and total figures. Usage: scripts/coverage.sh BUILD
set -eu
build=$1
out="$build/gcov"
rm -rf "$out"
mkdir -p "$out"
# gcov writes its .gcov files into the current directory and finds the
# sources by the relative paths they were compiled with: run it here, then
# move the library's files away.
: >"$out/summary.txt"
for dir in lib lib/*/; do
    dir=${dir%/}
    set -- "$dir"/*.c
    [ -e "$1" ] || continue
    gcov -b -p -o "$build/$dir" "$@" >>"$out/summary.txt" 2>/dev/null
done
for f in *.gcov; do
    [ -e "$f" ] || continue
    src=$(printf '%s' "${f%.gcov}" | tr '#' '/')
    case $src in
    lib/*) [ -f "$src" ] && mv "$f" "$out/" || rm -f "$f" ;;
    *) rm -f "$f" ;;
    esac
done
cd "$out"
awk '
function pct_of(line,   a) { match(line, /[0-9.]+%/); return substr(line, RSTART, RLENGTH - 1) + 0 }
function count_of(line) { sub(/.* of /, "", line); return line + 0 }
/^File / { file = $2; gsub("\047", "", file); keep = (file ~ /^lib\/([^\/]*\/)?[^\/]*\.c$/) && !(file in lines) }
/^$/ { keep = 0 }
keep && /^Lines executed:/ {
    n = count_of($0); p = pct_of($0); lt += n; lh += p * n / 100
    lines[file] = sprintf("%6.2f%% of %5d lines", p, n) }
keep && /^Taken at least once:/ {
    n = count_of($0); p = pct_of($0); bt += n; bh += p * n / 100
    br[file] = sprintf("%6.2f%% of %5d branches", p, n) }
END {
    for (f in lines) printf "%-26s %s   %s\n", f, lines[f], (f in br) ? br[f] : "no branches"
    printf "total lib/: lines %.2f%% (%d of %d), branches taken %.2f%% (%d of %d)\n",
        100 * lh / lt, lh + 0.5, lt, 100 * bh / bt, bh + 0.5, bt
}' summary.txt | sort
echo "annotated sources: $out/*.c.gcov (uncovered lines marked #####)"
