# fuzz/fuzz.mk -- the libFuzzer target over the migration spec.
#
# Included by the Makefile (include fuzz/fuzz.mk). Uses its variables:
# BUILD, LIB_SRC, WARNINGS, LIBS, DEPS_LIB_STAMP.
#
#   make fuzz                     builds $(BUILD)/fuzz/fuzz_spec with clang
#                                 (libFuzzer, ASan, UBSan; the library's
#                                 sources compiled in with the same flags)
#                                 and runs it for FUZZ_SECONDS
#   make fuzz FUZZ_SECONDS=600    a longer run
#   make fuzz-build               the binary only
#
# New inputs go to $(BUILD)/fuzz/corpus (the committed seeds in fuzz/corpus
# are read, never written); a crashing input is saved as
# $(BUILD)/fuzz/crash-*. Replay one with: $(BUILD)/fuzz/fuzz_spec FILE.
# The seeds are also replayed by `make test` (test/test_fuzz_corpus.c).

FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_DIR = $(BUILD)/fuzz
FUZZ_BIN = $(FUZZ_DIR)/fuzz_spec
FUZZ_SAN = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -O1 -g $(WARNINGS) -D_POSIX_C_SOURCE=200809L \
              -Iinclude -Ilib $(FUZZ_SAN) $(FUZZ_EXTRA_CFLAGS)
FUZZ_LIB_OBJ = $(patsubst lib/%.c,$(FUZZ_DIR)/lib/%.o,$(LIB_SRC))
FUZZ_DEPS_STAMP = $(FUZZ_DIR)/.deps-clang
# Options for the run; the dictionary holds the spec's keywords and names.
FUZZ_RUN_FLAGS ?= -max_len=2048 -timeout=30 -rss_limit_mb=2048

.PHONY: fuzz fuzz-build

# clang and its libFuzzer/sanitizer runtime; when missing, the packages
# are named and the build stops.
$(FUZZ_DEPS_STAMP): fuzz/fuzz.mk scripts/ensure-deps.sh
	@mkdir -p $(@D)
	@FUZZ_CC="$(FUZZ_CC)" sh scripts/ensure-deps.sh fuzz
	@touch $@

$(FUZZ_DIR)/lib/%.o: lib/%.c $(wildcard lib/*.h lib/*/*.h) $(PUBLIC_HEADERS) | $(DEPS_LIB_STAMP) $(FUZZ_DEPS_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BIN): fuzz/fuzz_spec.c $(FUZZ_LIB_OBJ) include/dualwrite.h | $(FUZZ_DEPS_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_spec.c $(FUZZ_LIB_OBJ) $(LIBS)

fuzz-build: $(FUZZ_BIN)

# Runs for FUZZ_SECONDS, then prints the number of executions. Fails (and
# keeps the crashing input) when the target finds a problem.
fuzz: $(FUZZ_BIN)
	@mkdir -p $(FUZZ_DIR)/corpus
	@echo "fuzz: running $(FUZZ_BIN) for $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/fuzz.log)"
	@$(FUZZ_BIN) $(FUZZ_RUN_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	  -print_final_stats=1 -dict=fuzz/spec.dict \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus fuzz/corpus \
	  >$(FUZZ_DIR)/fuzz.log 2>&1; \
	rc=$$?; \
	execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/fuzz.log); \
	if [ $$rc -ne 0 ]; then \
	  tail -n 60 $(FUZZ_DIR)/fuzz.log; \
	  echo "fuzz: FAILED after $${execs:-?} executions; the input is in $(FUZZ_DIR)/ (crash-*, timeout-*, leak-*, oom-*)"; \
	  exit $$rc; \
	fi; \
	grep -E '^#[0-9]+ +DONE' $(FUZZ_DIR)/fuzz.log | tail -n 1; \
	echo "fuzz: $${execs:-?} executions in $(FUZZ_SECONDS) s, no failure; corpus $$(ls $(FUZZ_DIR)/corpus | wc -l) inputs"
