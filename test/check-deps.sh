#!/bin/sh
# Checks who may install packages: only `make demo` and `make test` (the
# README's set-up commands, passing --install to scripts/ensure-deps.sh);
# every other target names what is missing and stops. It runs the targets
# in a copy of the tree with a compiler that lacks uthash.h, an `id` that
# says root, and an apt-get that only writes down that it was called.
#
# usage: test/check-deps.sh [make]
set -eu
MAKE=${1:-make}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "check-deps: $*" >&2
    exit 1
}

mkdir "$tmp/bin" "$tmp/tree"
real_cc=$(command -v "${CC:-cc}" || command -v cc)
cat > "$tmp/bin/cc" <<FAKE
#!/bin/sh
# The real compiler, except that uthash.h is missing.
if [ "\$*" = "-E -x c -" ]; then
    input=\$(cat)
    case \$input in *uthash.h*) exit 1 ;; esac
    printf '%s\n' "\$input" | exec "$real_cc" "\$@"
fi
exec "$real_cc" "\$@"
FAKE
printf '#!/bin/sh\necho 0\n' > "$tmp/bin/id"
printf '#!/bin/sh\necho "apt-get $*" >> "%s"\n' "$tmp/apt-get.calls" > "$tmp/bin/apt-get"
chmod +x "$tmp/bin/cc" "$tmp/bin/id" "$tmp/bin/apt-get"
PATH="$tmp/bin:$PATH"
export PATH

installer_called() {
    [ -s "$tmp/apt-get.calls" ]
}

# The script itself: checking only by default, installing when asked.
if CC=cc sh scripts/ensure-deps.sh test 2> "$tmp/err"; then
    fail "ensure-deps.sh passed without uthash.h"
fi
grep -q "missing packages: uthash-dev" "$tmp/err" || { cat "$tmp/err"; fail "ensure-deps.sh did not name uthash-dev"; }
installer_called && fail "ensure-deps.sh without --install called apt-get"
CC=cc sh scripts/ensure-deps.sh --install test 2> "$tmp/err" && fail "ensure-deps.sh --install passed while uthash.h stayed missing"
grep -q "^apt-get install .*uthash-dev" "$tmp/apt-get.calls" || fail "ensure-deps.sh --install did not call apt-get install uthash-dev"
rm -f "$tmp/apt-get.calls"

# Each target in a fresh copy of the tree (no stamps of a check passed).
cp -R Makefile README.md bench examples fuzz include lib scripts test tools "$tmp/tree/"
for target in all install sanitize valgrind coverage bench examples fuzz-build deps; do
    if $MAKE --no-print-directory -j1 -C "$tmp/tree" CC=cc PREFIX="$tmp/prefix" "$target" > "$tmp/out" 2>&1; then
        fail "make $target succeeded without uthash.h"
    fi
    grep -q "missing packages: uthash-dev" "$tmp/out" || { cat "$tmp/out"; fail "make $target did not name uthash-dev"; }
    installer_called && fail "make $target called apt-get"
done
# The two set-up commands do call the installer.
for target in demo test; do
    $MAKE --no-print-directory -j1 -C "$tmp/tree" CC=cc "$target" > "$tmp/out" 2>&1 && fail "make $target succeeded without uthash.h"
    grep -q "^apt-get install .*uthash-dev" "$tmp/apt-get.calls" 2>/dev/null || { cat "$tmp/out"; fail "make $target did not install uthash-dev"; }
    rm -f "$tmp/apt-get.calls"
done
echo "check-deps: only make demo and make test install packages; every other target names them and stops"
