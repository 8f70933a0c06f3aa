#!/bin/sh
# The bash completion of sockbus-nats offers exactly the options its --help
# lists, and file names after -s and -c:
#   check_completion_nats.sh COMPLETION SOCKBUS_NATS
# Exits 77 (skipped) without bash.
set -eu
completion=$1
prog=$2
if ! command -v bash >/dev/null 2>&1; then
    echo "check_completion_nats: skipped: bash is not installed"
    exit 77
fi
want=$("$prog" --help | grep -E '^ +(-[A-Za-z0-9], )?--[a-z]' |
    sed -E 's/^ +(-[A-Za-z0-9], )?(--[a-z][a-z-]*).*/\1 \2/; s/,//' | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
have=$(bash -c '. "$1"; echo $_sockbus_nats_options' sh "$completion" | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
status=0
if [ "$want" != "$have" ]; then
    echo "check_completion_nats: --help lists: $want" >&2
    echo "check_completion_nats: completion offers: $have" >&2
    status=1
fi
work=$(mktemp -d /tmp/sbtest-completion-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
: >"$work/bus.sock"
got=$(cd "$work" && bash -c '. "$1"; COMP_WORDS=(sockbus-nats -s b); COMP_CWORD=2; _sockbus_nats; echo "${COMPREPLY[*]}"' sh "$completion")
if [ "$got" != "bus.sock" ]; then
    echo "check_completion_nats: -s b completes to '$got', not bus.sock" >&2
    status=1
fi
[ $status -eq 0 ] && echo "check_completion_nats: the completion offers every option of sockbus-nats"
exit $status
