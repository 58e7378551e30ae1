#!/bin/sh
# Runs each cmocka test program (optionally under $TEST_WRAP, e.g. valgrind),
# naming each as it starts (the fault walks take a while), then prints one
# closing line counting test cases over all programs:
#   "tests: N passed, N failed"
# A program that crashes or exits non-zero without reporting counts as one
# failure. Each program gets a TMPDIR of its own, which must be empty when
# it ends: a test that leaves files behind counts as one failure too.
#
# TEST_JOBS=n runs up to n programs at once (default 1; `make valgrind` uses
# 2, as its fault walks run one worker each). Each program's output is
# printed whole, in the order the programs were given, once it has ended.
set -u
jobs=${TEST_JOBS:-1}
case $jobs in
'' | *[!0-9]* | 0)
    echo "run-tests: TEST_JOBS must be a positive number, not '$jobs'" >&2
    exit 2
    ;;
esac
passed=0
failed=0
bad_programs=""
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
n=$#

# Program number $1 ($2) in the background: its output in $scratch/$1.log,
# its exit status in $scratch/$1.rc once it has ended (written whole by a
# rename, so a reader never sees half of it), its times beside them.
start() {
    echo "run-tests: $(basename "$2")"
    mkdir "$scratch/tmp.$1"
    date +%s >"$scratch/$1.started"
    (
        TMPDIR="$scratch/tmp.$1" ${TEST_WRAP:-} "$2" >"$scratch/$1.log" 2>&1
        echo $? >"$scratch/$1.rc.part"
        date +%s >"$scratch/$1.ended"
        mv "$scratch/$1.rc.part" "$scratch/$1.rc"
    ) &
    eval "pid_$1=\$!"
}

# Program number $1 ($2) has ended: its output, its counts, its TMPDIR.
report() {
    name=$(basename "$2")
    log="$scratch/$1.log"
    rc=$(cat "$scratch/$1.rc")
    echo "run-tests: $name ended"
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ]; then
        bad_programs="$bad_programs $name"
        [ "$f" -eq 0 ] && failed=$((failed + 1))
    fi
    left=$(cd "$scratch/tmp.$1" && ls -A)
    if [ -n "$left" ]; then
        echo "run-tests: $name left files behind in its TMPDIR:" $left
        bad_programs="$bad_programs $name"
        failed=$((failed + 1))
    fi
    rm -rf "${scratch:?}/tmp.$1"
    echo "run-tests: $name took $(($(cat "$scratch/$1.ended") - $(cat "$scratch/$1.started"))) s"
}

# Programs started but not ended yet.
running() {
    r=0
    i=$shown
    while [ "$i" -lt "$next" ]; do
        [ -f "$scratch/$i.rc" ] || r=$((r + 1))
        i=$((i + 1))
    done
    echo "$r"
}

next=1  # the next program to start
shown=1 # the next program to report, in the given order
while [ "$shown" -le "$n" ]; do
    if [ "$shown" -lt "$next" ] && [ -f "$scratch/$shown.rc" ]; then
        eval "report $shown \"\${$shown}\""
        shown=$((shown + 1))
    elif [ "$next" -le "$n" ] && [ "$(running)" -lt "$jobs" ]; then
        eval "start $next \"\${$next}\""
        next=$((next + 1))
    elif [ "$jobs" -eq 1 ]; then
        eval "wait \$pid_$shown"
    else
        sleep 1
    fi
done
[ -n "$bad_programs" ] && echo "failing test programs:$bad_programs"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$bad_programs" ]
