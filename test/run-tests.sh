#!/bin/sh
# Runs each cmocka test program (optionally under $TEST_WRAP, e.g. valgrind),
# then prints one closing line counting test cases over all programs:
#   "tests: N passed, N failed"
# A program that crashes or exits non-zero without reporting counts as one
# failure.
set -u
passed=0
failed=0
bad_programs=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
    ${TEST_WRAP:-} "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ]; then
        bad_programs="$bad_programs $(basename "$t")"
        [ "$f" -eq 0 ] && failed=$((failed + 1))
    fi
done
[ -n "$bad_programs" ] && echo "failing test programs:$bad_programs"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$bad_programs" ]
