# Which backends each test program must pass on (included by the Makefile).
#
# The rule:
#   core         The program tests what the core decides -- stages, routing,
#                writes, reads and their comparison, backfill, verify,
#                repair, gates, spec validation, errors, rows -- and must
#                pass on every backend. It runs on the backend that
#                DW_TEST_BACKEND names (test/support.c checks it before
#                main()) and reaches the database through the fixture in
#                test/support.c. A core program that still calls sqlite3_*
#                itself says why below; those calls are to leave before a
#                second backend runs it.
#   sqlite-only  The program tests SQLite's own mechanism: VFS fault walks,
#                WAL and checkpoints, the progress handler, anything that
#                reads sqlite_schema or PRAGMAs, the contract's backup
#                files, the state tables as SQLite stores them. It runs
#                only when DW_TEST_BACKEND is sqlite.
# Every test/test_*.c must be in exactly one list: the Makefile stops
# otherwise.

TEST_CORE = \
  test_backfill \
  test_callback_rows \
  test_bad_input \
  test_cmocka_helper \
  test_facts \
  test_fixture \
  test_fuzz_corpus \
  test_json \
  test_key_text \
  test_link_table \
  test_mismatch \
  test_read \
  test_routing \
  test_row \
  test_same_table \
  test_spec \
  test_stage \
  test_stored \
  test_verify \
  test_write

# Why core programs still call sqlite3_* themselves (beyond the sqlite3 *
# of the public API and of callbacks, which the API change will rename):
#   test_backfill      kill and writer children open their own connection;
#                      probe() is an SQL function (sqlite3_create_function)
#                      to die inside a batch; a WAL hook, busy timeouts and
#                      sqlite3_limit for the busy and too-long cases; the
#                      statements of a batch counted with sqlite3_trace_v2.
#   test_bad_input     hostile names checked in sqlite_schema; quoting with
#                      sqlite3_mprintf; sqlite3_limit and memory high-water
#                      marks for the size limits.
#   test_link_table    the stored spec and the contract checked in
#                      sqlite_schema; PRAGMA synchronous for speed.
#   test_mismatch      the statement cache read with sqlite3_next_stmt and
#                      sqlite3_stmt_status; PRAGMA synchronous for speed.
#   test_read          the time-budget tests use the progress handler;
#                      memory use read with sqlite3_memory_used.
#   test_routing       cohort SQL calls application functions
#                      (sqlite3_create_function); statements traced with
#                      sqlite3_trace_v2; sqlite3_limit for a too-long key.
#   test_row           dw_sqlite_row_set_columns() takes a sqlite3_stmt in the
#                      public API.
#   test_spec          the double-quoted-string setting (sqlite3_db_config)
#                      and tables looked up in sqlite_master.
#   test_stage         the transaction state (sqlite3_txn_state) and a busy
#                      handler that commits meanwhile.
#   test_stored        a race staged with sqlite3_trace_v2; busy timeouts;
#                      the stored spec read from sqlite_master.
#   test_verify        memory high-water marks; bulk inserts through
#                      prepared statements; an extended error code.
#   test_write         busy timeouts, sqlite3_limit for a too-long key, and
#                      a statement checking how a value converts.

TEST_SQLITE_ONLY = \
  test_alloc \
  test_catalog \
  test_contract \
  test_damaged_state \
  test_dwctl \
  test_fault_concurrency \
  test_fault_crash \
  test_fault_io \
  test_fault_oom \
  test_fault_txn \
  test_left_open \
  test_schema_change \
  test_state_schema \
  test_verify_sql

# Why each is SQLite-only:
#   test_alloc              the core's formatting and case folding checked
#                           against SQLite's; allocators counted beside
#                           SQLite's own.
#   test_catalog            the SQLite backend's description of its catalog
#                           and its checks of SQL from the spec, op by op.
#   test_contract           backup files, PRAGMA table_xinfo, a corrupting VFS.
#   test_damaged_state      the state tables edited by hand, as SQLite holds
#                           them.
#   test_dwctl              the tool opens a database file by its path.
#   test_fault_*            the failing VFS, crashes, WAL and checkpoints.
#   test_left_open          a ROLLBACK that SQLite cannot prepare under a
#                           lasting allocation failure.
#   test_schema_change      SQLite re-preparing statements after a schema
#                           change, and its double-quoted-string setting.
#   test_state_schema       the state tables' SQLite schema and upgrades.
#   test_verify_sql         verification's statements as SQLite runs them:
#                           traced, full-scan steps, query plans.

DW_TEST_BACKEND ?= sqlite
export DW_TEST_BACKEND

TEST_UNCLASSIFIED = $(filter-out $(TEST_CORE) $(TEST_SQLITE_ONLY), \
                      $(patsubst test/%.c,%,$(TEST_SRC)))
TEST_TWICE = $(filter $(TEST_CORE),$(TEST_SQLITE_ONLY))
TEST_GONE = $(filter-out $(patsubst test/%.c,%,$(TEST_SRC)), \
              $(TEST_CORE) $(TEST_SQLITE_ONLY))
ifneq ($(strip $(TEST_UNCLASSIFIED)$(TEST_TWICE)$(TEST_GONE)),)
$(error test/backends.mk: classify each test program once as core or sqlite-only (unlisted: $(TEST_UNCLASSIFIED); in both: $(TEST_TWICE); no such program: $(TEST_GONE)))
endif

# The programs `make test` runs on the chosen backend.
ifeq ($(DW_TEST_BACKEND),sqlite)
TEST_FOR_BACKEND = $(TEST_CORE) $(TEST_SQLITE_ONLY)
else
TEST_FOR_BACKEND = $(TEST_CORE)
endif
TEST_RUN_BIN = $(patsubst %,$(BUILD)/test/%,$(sort $(TEST_FOR_BACKEND)))
