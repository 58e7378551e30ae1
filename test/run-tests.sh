#!/bin/sh
# Runs each cmocka test program (optionally under $TEST_WRAP, e.g. valgrind),
# naming each as it starts (the fault walks take a while), then prints one
# closing line counting test cases over all programs:
#   "tests: N passed, N failed"
# A program that crashes or exits non-zero without reporting counts as one
# failure. Each program gets a TMPDIR of its own, which must be empty when
# it ends: a test that leaves files behind counts as one failure too.
set -u
passed=0
failed=0
bad_programs=""
log=$(mktemp)
scratch=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$scratch"' EXIT
for t in "$@"; do
    name=$(basename "$t")
    echo "run-tests: $name"
    mkdir "$scratch/$name"
    started=$(date +%s)
    TMPDIR="$scratch/$name" ${TEST_WRAP:-} "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ]; then
        bad_programs="$bad_programs $name"
        [ "$f" -eq 0 ] && failed=$((failed + 1))
    fi
    left=$(cd "$scratch/$name" && ls -A)
    if [ -n "$left" ]; then
        echo "run-tests: $name left files behind in its TMPDIR:" $left
        bad_programs="$bad_programs $name"
        failed=$((failed + 1))
    fi
    rm -rf "${scratch:?}/$name"
    echo "run-tests: $name took $(($(date +%s) - started)) s"
done
[ -n "$bad_programs" ] && echo "failing test programs:$bad_programs"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$bad_programs" ]
