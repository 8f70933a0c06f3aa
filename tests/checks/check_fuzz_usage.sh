#!/bin/sh
# scripts/fuzz answers its command line before it builds or runs anything:
# check_fuzz_usage.sh FUZZ_SCRIPT
#  - --help and -h print the usage on stdout and exit 0;
#  - a SECONDS that is not a whole number, or a TARGET that tests/fuzz/
#    does not have, is one line and the usage on stderr, and exit 2;
#  - none of these creates the build directory.
# Each call is bounded (timeout kills its whole process group): a script
# that took "--help" for SECONDS would build the targets and then fuzz
# without end.
set -eu
fuzz=$1
work=$(mktemp -d /tmp/sbtest-fuzz-usage-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
FUZZ_BUILD_DIR="$work/build"
export FUZZ_BUILD_DIR
status=0

fail() {
    echo "check_fuzz_usage: $*"
    status=1
}

# run STATUS ARG...: scripts/fuzz ARG... exits with STATUS, builds nothing.
run() {
    want=$1
    shift
    rc=0
    timeout 10 "$fuzz" "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "scripts/fuzz $*: exit status $rc, not $want"
    if [ -e "$FUZZ_BUILD_DIR" ]; then
        fail "scripts/fuzz $*: created the build directory"
        rm -rf "$FUZZ_BUILD_DIR"
    fi
    if [ "$rc" -eq 124 ]; then
        exit 1 # it was building or fuzzing: the other calls would too
    fi
}

for opt in --help -h; do
    run 0 "$opt"
    grep -q '^  scripts/fuzz \[SECONDS\] \[TARGET\.\.\.\]$' "$work/out" ||
        fail "scripts/fuzz $opt: no usage line on stdout"
done
run 2 abc
grep -q "^fuzz: SECONDS must be a whole number, not 'abc'$" "$work/err" ||
    fail "scripts/fuzz abc: no line saying what is wrong"
run 2 1 nosuch
grep -q "^fuzz: no target 'nosuch' in tests/fuzz/" "$work/err" ||
    fail "scripts/fuzz 1 nosuch: no line saying what is wrong"
exit $status
