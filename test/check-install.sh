#!/bin/sh
# Installs into a scratch prefix, then builds and runs the README's quick
# start against it with pkg-config alone, as a user of the installed
# library would, and checks that `make install` refreshes the loader's
# cache when (and only when) that is what makes the library found.
set -eu
MAKE=${1:-make}
readme=README.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "check-install: $*" >&2
    exit 1
}

# A stand-in ldconfig: its configuration names $tmp/prefix/lib only, and
# every other call is written down instead of touching the system's cache.
mkdir "$tmp/bin"
cat > "$tmp/bin/ldconfig" <<FAKE
#!/bin/sh
case " \$* " in
*" -N "*) echo "$tmp/prefix/lib: (from a stand-in ld.so.conf)" ;;
*) echo "ldconfig \$*" >> "$tmp/ldconfig.calls" ;;
esac
FAKE
chmod +x "$tmp/bin/ldconfig"
install_into() {
    PATH="$tmp/bin:$PATH" $MAKE --no-print-directory -s install "$@" > "$tmp/install.out" 2>&1 ||
        { cat "$tmp/install.out"; fail "make install $* failed"; }
}
ldconfig_calls() {
    cat "$tmp/ldconfig.calls" 2>/dev/null | wc -l
}

# The soname follows the header's major version.
major=$(sed -n 's/^#define DW_VERSION_MAJOR \([0-9]*\)/\1/p' include/dualwrite.h)
soname=libdualwrite.so.$major
install_into PREFIX="$tmp/prefix"
for f in include/dualwrite.h include/dualwrite/sqlite.h include/dualwrite_cmocka.h lib/libdualwrite.a lib/libdualwrite.so lib/$soname lib/pkgconfig/dualwrite.pc bin/dwctl share/man/man1/dwctl.1; do
    [ -e "$tmp/prefix/$f" ] || fail "$f not installed"
done
# Into a directory the loader searches: root refreshes its cache.
if [ "$(id -u)" = 0 ]; then
    [ "$(ldconfig_calls)" -eq 1 ] || fail "install as root did not run ldconfig"
    grep -q "ran ldconfig" "$tmp/install.out" || fail "install did not say it ran ldconfig"
else
    [ "$(ldconfig_calls)" -eq 0 ] || fail "install ran ldconfig without root"
    grep -q "sudo ldconfig" "$tmp/install.out" || fail "install did not say to run ldconfig"
fi
# Staged for packaging, or where the loader does not look: no ldconfig.
install_into PREFIX="$tmp/prefix" DESTDIR="$tmp/stage"
[ -e "$tmp/stage$tmp/prefix/lib/$soname" ] || fail "DESTDIR install missed the library"
[ ! -s "$tmp/install.out" ] || { cat "$tmp/install.out"; fail "DESTDIR install said more than nothing"; }
install_into PREFIX="$tmp/elsewhere"
grep -q "LD_LIBRARY_PATH=$tmp/elsewhere/lib" "$tmp/install.out" || fail "install did not name LD_LIBRARY_PATH"
[ "$(id -u)" != 0 ] || [ "$(ldconfig_calls)" -eq 1 ] || fail "install ran ldconfig for DESTDIR or an unsearched libdir"

# The README's quick start: its program, its command, its output.
mkdir "$tmp/quick"
awk '/^\/\* quickstart\.c/ { on = 1 } on && /^```$/ { exit } on' "$readme" > "$tmp/quick/quickstart.c"
command=$(grep -m 1 '^cc quickstart\.c ' "$readme") || fail "no quick start command in $readme"
awk '/^It prints:$/ { found = 1; next } found && /^```/ { if (on) exit; on = 1; next } on' "$readme" > "$tmp/quick/expected"
[ -s "$tmp/quick/quickstart.c" ] && [ -s "$tmp/quick/expected" ] || fail "no quick start program or output in $readme"
# As the README's Installing says for a prefix of one's own.
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
export LD_LIBRARY_PATH="$tmp/prefix/lib"
(cd "$tmp/quick" && sh -c "$command") > "$tmp/quick/out" 2>&1 ||
    { cat "$tmp/quick/out"; fail "the quick start failed: $command"; }
diff -u "$tmp/quick/expected" "$tmp/quick/out" || fail "the quick start printed something else than README.md says"
ldd "$tmp/quick/a.out" | grep -q "$tmp/prefix/lib/$soname" \
    || fail "the quick start did not load the installed shared library"
# The installed tool runs, and its man page is a man page.
"$tmp/prefix/bin/dwctl" --version | grep -q "^dwctl " \
    || fail "the installed dwctl does not run"
grep -q '^\.TH DWCTL 1' "$tmp/prefix/share/man/man1/dwctl.1" \
    || fail "dwctl.1 is not the man page"
# Put back the tree's own dualwrite.pc, which install rewrote for $tmp.
$MAKE --no-print-directory -s dualwrite.pc
echo "check-install: install into a prefix works, and the README's quick start builds and runs against it"
