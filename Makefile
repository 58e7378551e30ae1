# libdualwrite -- zero-downtime schema migrations on SQLite.
#
# Targets: all (default), test, demo, sanitize, valgrind, coverage, fuzz,
# bench, install, uninstall, clean. The usual variables are honoured: CC, CFLAGS, CPPFLAGS, LDFLAGS,
# PREFIX, DESTDIR, includedir, libdir, pkgconfigdir, bindir, mandir. (Not LIBRARY_PATH: GCC
# reads that one from the environment.)

VERSION_MAJOR := $(shell sed -n 's/^\#define DW_VERSION_MAJOR \([0-9]*\)/\1/p' include/dualwrite.h)
VERSION_MINOR := $(shell sed -n 's/^\#define DW_VERSION_MINOR \([0-9]*\)/\1/p' include/dualwrite.h)
VERSION_PATCH := $(shell sed -n 's/^\#define DW_VERSION_PATCH \([0-9]*\)/\1/p' include/dualwrite.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
includedir ?= $(PREFIX)/include
libdir ?= $(PREFIX)/lib
pkgconfigdir ?= $(libdir)/pkgconfig
bindir ?= $(PREFIX)/bin
mandir ?= $(PREFIX)/share/man
INSTALL_INCLUDE_PATH = $(DESTDIR)$(includedir)
INSTALL_LIBRARY_PATH = $(DESTDIR)$(libdir)
INSTALL_PKGCONF_PATH = $(DESTDIR)$(pkgconfigdir)
INSTALL_BIN_PATH = $(DESTDIR)$(bindir)
INSTALL_MAN_PATH = $(DESTDIR)$(mandir)/man1
INSTALL ?= install

# Where objects go; `make sanitize` builds a second tree beside the first.
BUILD ?= build

OPTIMIZATION ?= -O2
WARNINGS = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wvla
DEBUG ?= -g
# The user's CFLAGS come last so they can override ours.
REAL_CFLAGS = -std=c11 $(OPTIMIZATION) $(DEBUG) $(WARNINGS) -fPIC \
              -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -Iinclude \
              $(SAN_FLAGS) $(CPPFLAGS) $(CFLAGS)
REAL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
LIBS = -lsqlite3

LIB_NAME = libdualwrite
STLIB = $(LIB_NAME).a
DYLIB_SONAME = $(LIB_NAME).so.$(VERSION_MAJOR)
DYLIB_REAL = $(LIB_NAME).so.$(VERSION)
DYLIB = $(LIB_NAME).so
PC_FILE = dualwrite.pc

PUBLIC_HEADERS = include/dualwrite.h include/dualwrite/sqlite.h
# The core in lib/, each backend in a folder of its own.
LIB_SRC = $(wildcard lib/*.c) $(wildcard lib/sqlite/*.c)
LIB_OBJ = $(patsubst lib/%.c,$(BUILD)/lib/%.o,$(LIB_SRC))
TEST_SRC = $(wildcard test/test_*.c)
TEST_BIN = $(patsubst test/%.c,$(BUILD)/test/%,$(TEST_SRC))
TEST_SUPPORT_OBJ = $(BUILD)/test/support.o $(BUILD)/test/fault.o
# Core and SQLite-only programs, and which of them DW_TEST_BACKEND runs.
include test/backends.mk
EXAMPLE_SRC = $(wildcard examples/*.c)
EXAMPLE_BIN = $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRC))

DEPS_LIB_STAMP = $(BUILD)/.deps-library
DEPS_TEST_STAMP = $(BUILD)/.deps-test
# Only the README's two set-up commands install missing packages (as root,
# with apt-get); every other target names them and stops.
ifneq ($(filter demo test,$(MAKECMDGOALS)),)
DEPS_INSTALL = --install
endif
ENSURE_DEPS = CC="$(CC)" sh scripts/ensure-deps.sh $(DEPS_INSTALL)

.PHONY: all test run-tests demo sanitize valgrind install uninstall clean \
        check-header check-symbols check-install examples deps coverage bench \
        check-bench check-walkthrough check-deps check-core

DWCTL_SRC = $(wildcard tools/*.c)
DWCTL = $(BUILD)/tools/dwctl

all: $(STLIB) $(DYLIB_SONAME) $(DYLIB) $(PC_FILE) $(DWCTL)

deps: $(DEPS_TEST_STAMP)

$(DEPS_LIB_STAMP): scripts/ensure-deps.sh
	@mkdir -p $(@D)
	@$(ENSURE_DEPS) library
	@touch $@

$(DEPS_TEST_STAMP): scripts/ensure-deps.sh
	@mkdir -p $(@D)
	@$(ENSURE_DEPS) test
	@touch $@

$(BUILD)/lib/%.o: lib/%.c $(wildcard lib/*.h lib/*/*.h) $(PUBLIC_HEADERS) | $(DEPS_LIB_STAMP)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -c -o $@ $<

$(STLIB): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(DYLIB_SONAME): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(DYLIB_SONAME) -o $@ $^ $(REAL_LDFLAGS) $(LIBS)

$(DYLIB): $(DYLIB_SONAME)
	ln -sf $(DYLIB_SONAME) $@

# Written on every run, so that `make install PREFIX=...` after a plain
# `make` installs a file naming the right directories.
.PHONY: $(PC_FILE)
$(PC_FILE):
	@printf '%s\n' \
	  'prefix=$(PREFIX)' \
	  'libdir=$(libdir)' \
	  'includedir=$(includedir)' \
	  '' \
	  'Name: dualwrite' \
	  'Description: zero-downtime schema migrations on SQLite: dual writes, shadow reads, stored stages' \
	  'Version: $(VERSION)' \
	  'Requires: sqlite3' \
	  'Libs: -L$${libdir} -ldualwrite' \
	  'Cflags: -I$${includedir}' > $@

# ---- dwctl -----------------------------------------------------------------

# The command-line tool, linked with this tree's static library (so a
# sanitizer build checks the tool too).
$(DWCTL): $(DWCTL_SRC) tools/dwctl.h $(PUBLIC_HEADERS) $(BUILD)/$(STLIB)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $(DWCTL_SRC) $(BUILD)/$(STLIB) $(REAL_LDFLAGS) $(LIBS)

# ---- tests -----------------------------------------------------------------

$(BUILD)/test/%.o: test/%.c test/support.h test/fault.h $(PUBLIC_HEADERS) | $(DEPS_TEST_STAMP)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -Ilib -c -o $@ $<

$(BUILD)/test/%: test/%.c test/support.h test/fault.h include/dualwrite_cmocka.h $(TEST_SUPPORT_OBJ) $(BUILD)/$(STLIB) | $(DEPS_TEST_STAMP)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -Ilib -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/$(STLIB) $(REAL_LDFLAGS) -lcmocka $(LIBS)

# The dwctl tests drive the built tool.
$(BUILD)/test/test_dwctl: $(DWCTL)

# Tests link a static library built from this tree's objects (so that a
# sanitizer build tests sanitized objects).
$(BUILD)/$(STLIB): $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# TEST_WRAP runs each test program (valgrind uses it).
TEST_WRAP ?=
run-tests: $(TEST_BIN)
	@BUILD=$(BUILD) TEST_WRAP="$(TEST_WRAP)" sh test/run-tests.sh $(TEST_RUN_BIN)

test: run-tests check-header all
	@$(MAKE) --no-print-directory check-core check-symbols check-install check-deps check-walkthrough check-bench

check-header:
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Itest/poison -Iinclude -x c include/dualwrite.h
	$(CC) -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Itest/poison -Iinclude -x c include/dualwrite/sqlite.h
	$(CC) -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Itest/poison -Iinclude -x c test/header_only.c
	$(CXX) -std=c++11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Itest/poison -Iinclude -x c++ test/header_only.c
	$(CC) -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Itest/poison -Iinclude -DHEADER_ORDER=0 -x c test/header_sqlite.c
	$(CXX) -std=c++11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Itest/poison -Iinclude -DHEADER_ORDER=0 -x c++ test/header_sqlite.c
	for order in 1 2; do \
	  $(CC) -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Iinclude -DHEADER_ORDER=$$order -x c test/header_sqlite.c && \
	  $(CC) -std=c99 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -Iinclude -DHEADER_ORDER=$$order -x c test/header_sqlite.c && \
	  $(CXX) -std=c++11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Iinclude -DHEADER_ORDER=$$order -x c++ test/header_sqlite.c || exit 1; \
	done
	$(CC) -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -Iinclude -x c test/header_cmocka.c

# The core names no SQLite symbol: everything SQLite's is in lib/sqlite/.
check-core:
	@sh test/check-core.sh

check-symbols: $(DYLIB_SONAME)
	@sh test/check-symbols.sh $(DYLIB_SONAME)

check-install: all
	@sh test/check-install.sh "$(MAKE)"

# Only `make demo` and `make test` install missing packages.
check-deps:
	@sh test/check-deps.sh "$(MAKE)"

# The README's dwctl walkthrough, run as written.
check-walkthrough: $(DWCTL) | $(DEPS_TEST_STAMP)
	@sh test/check-walkthrough.sh README.md $(DWCTL)

# The test programs only, from their own build tree: the installed
# libraries are never built with sanitizers.
sanitize:
	$(MAKE) run-tests BUILD=build/sanitize OPTIMIZATION=-O1 \
	  SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# The fault walks are thinned to every 10th failure point under valgrind
# (the whole walk would take about 45 minutes there). Each walk runs one
# worker there, so VALGRIND_JOBS programs run at once instead.
VALGRIND_JOBS ?= 2
valgrind: $(TEST_BIN)
	@sh scripts/ensure-deps.sh valgrind
	@DW_FAULT_STRIDE=10 DW_FAULT_JOBS=1 TEST_JOBS=$(VALGRIND_JOBS) BUILD=$(BUILD) \
	  DW_TOOL_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all" \
	  TEST_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all" \
	  sh test/run-tests.sh $(TEST_RUN_BIN)

# Line and branch coverage of lib/ over the whole test suite, from its own
# build tree (gcov comes with gcc).
coverage:
	@rm -f build/coverage/lib/*.gcda build/coverage/lib/*/*.gcda build/coverage/test/*.gcda
	@$(MAKE) --no-print-directory run-tests BUILD=build/coverage OPTIMIZATION=-O0 SAN_FLAGS=--coverage
	@sh scripts/coverage.sh build/coverage

# The libFuzzer target over the spec (make fuzz, FUZZ_SECONDS=60).
include fuzz/fuzz.mk

# ---- examples --------------------------------------------------------------

$(BUILD)/examples/%: examples/%.c $(BUILD)/$(STLIB)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $< $(BUILD)/$(STLIB) $(REAL_LDFLAGS) $(LIBS)

examples: $(EXAMPLE_BIN)

demo: $(BUILD)/examples/incident_statuses $(BUILD)/examples/lazy_inventory
	@rm -f $(BUILD)/incident_statuses.db* $(BUILD)/lazy_inventory.db*
	$(BUILD)/examples/incident_statuses $(BUILD)/incident_statuses.db
	$(BUILD)/examples/lazy_inventory $(BUILD)/lazy_inventory.db

# ---- benchmarks ------------------------------------------------------------

# The library against the same SQL written by hand, as ratios (bench/bench.c
# says what each figure compares). BENCH_ARGS passes options, for example
# make bench BENCH_ARGS="--rows 100000 --only off_write,dual_write".
BENCH_ARGS ?=
BENCH_BIN = $(BUILD)/bench/bench

$(BENCH_BIN): bench/bench.c $(PUBLIC_HEADERS) $(BUILD)/$(STLIB)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -o $@ $< $(BUILD)/$(STLIB) $(REAL_LDFLAGS) $(LIBS)

bench: $(BENCH_BIN)
	@cd $(BUILD)/bench && ./bench $(BENCH_ARGS)

# A run in miniature (under a second), from `make test`: the benchmark
# builds, checks its own results and prints every figure.
BENCH_FIGURES = off_write_ratio dual_write_ratio shadow_read_ratio \
                shadow_read_sampled_ratio backfill_ratio backfill_max_batch_ms \
                verify_ratio rss_growth_ratio mismatch_log_growth_ratio \
                verify_best_ratio dual_write_trigger_ratio \
                backfill_routed_ratio backfill_callback_ratio \
                verify_callback_ratio backfill_max_batch_ms_5m
check-bench: $(BENCH_BIN)
	@cd $(BUILD)/bench && rm -f smoke.db* && \
	  if ! ./bench --rows 2000 --rounds 1 --ops 500 --db smoke.db >smoke.out 2>&1; then \
	    cat smoke.out; echo "check-bench: the benchmark failed" >&2; exit 1; fi; \
	  for f in $(BENCH_FIGURES); do \
	    grep -q "^$$f: [0-9]" smoke.out || { cat smoke.out; echo "check-bench: no $$f" >&2; exit 1; }; \
	  done; \
	  rm -f smoke.db* smoke.out; \
	  echo "check-bench: the benchmark runs and prints every figure (2,000 rows, one round)"

# ---- install ---------------------------------------------------------------

install: all
	$(INSTALL) -d $(INSTALL_INCLUDE_PATH) $(INSTALL_LIBRARY_PATH) $(INSTALL_PKGCONF_PATH)
	$(INSTALL) -m 644 include/dualwrite.h include/dualwrite_cmocka.h $(INSTALL_INCLUDE_PATH)
	$(INSTALL) -d $(INSTALL_INCLUDE_PATH)/dualwrite
	$(INSTALL) -m 644 include/dualwrite/sqlite.h $(INSTALL_INCLUDE_PATH)/dualwrite
	$(INSTALL) -m 644 $(STLIB) $(INSTALL_LIBRARY_PATH)
	$(INSTALL) -m 755 $(DYLIB_SONAME) $(INSTALL_LIBRARY_PATH)/$(DYLIB_REAL)
	ln -sf $(DYLIB_REAL) $(INSTALL_LIBRARY_PATH)/$(DYLIB_SONAME)
	ln -sf $(DYLIB_SONAME) $(INSTALL_LIBRARY_PATH)/$(DYLIB)
	$(INSTALL) -m 644 $(PC_FILE) $(INSTALL_PKGCONF_PATH)
	$(INSTALL) -d $(INSTALL_BIN_PATH) $(INSTALL_MAN_PATH)
	$(INSTALL) -m 755 $(DWCTL) $(INSTALL_BIN_PATH)/dwctl
	$(INSTALL) -m 644 tools/dwctl.1 $(INSTALL_MAN_PATH)/dwctl.1
	@[ -n "$(DESTDIR)" ] || sh scripts/loader-cache.sh "$(libdir)"

uninstall:
	rm -f $(INSTALL_INCLUDE_PATH)/dualwrite.h $(INSTALL_INCLUDE_PATH)/dualwrite_cmocka.h \
	      $(INSTALL_INCLUDE_PATH)/dualwrite/sqlite.h \
	      $(INSTALL_LIBRARY_PATH)/$(STLIB) \
	      $(INSTALL_LIBRARY_PATH)/$(DYLIB_REAL) $(INSTALL_LIBRARY_PATH)/$(DYLIB_SONAME) \
	      $(INSTALL_LIBRARY_PATH)/$(DYLIB) $(INSTALL_PKGCONF_PATH)/$(PC_FILE) \
	      $(INSTALL_BIN_PATH)/dwctl $(INSTALL_MAN_PATH)/dwctl.1
	-rmdir $(INSTALL_INCLUDE_PATH)/dualwrite 2>/dev/null

clean:
	rm -rf build $(STLIB) $(DYLIB) $(DYLIB_SONAME) $(PC_FILE)
