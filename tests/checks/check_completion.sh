#!/bin/sh
# The bash completion of sockbus: check_completion.sh COMPLETION SOCKBUS
#  - offers, for each command, exactly the options its --help lists;
#  - completes commands, options, file names after -s, bench's workloads
#    and transports, a command after `reply SUBJECT --`, and nothing for
#    subjects (free text).
# Exits 77 (skipped) without bash.
set -eu
completion=$1
sockbus=$2
if ! command -v bash >/dev/null 2>&1; then
    echo "check_completion: skipped: bash is not installed"
    exit 77
fi
work=$(mktemp -d /tmp/sbtest-completion-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/dir"
: >"$work/dir/bus.sock"

# The options (short and long) of the option lines of a --help text.
help_options() {
    grep -E '^ +(-[A-Za-z0-9], )?--[a-z]' |
        sed -E 's/^ +(-[A-Za-z0-9], )?(--[a-z][a-z-]*).*/\1 \2/; s/,//' | tr ' ' '\n' | sed '/^$/d' | sort
}

status=0
commands=$("$sockbus" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF > 1 && $1 != "Commands:" { print $1 }')
for cmd in $commands; do
    want=$("$sockbus" "$cmd" --help | help_options | tr '\n' ' ')
    have=$(bash -c '. "$1"; _sockbus_options "$2"' sh "$completion" "$cmd" | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
    if [ "$want" != "$have" ]; then
        echo "check_completion: sockbus $cmd: --help lists: $want; the completion offers: $have" >&2
        status=1
    fi
done

# complete LINE: what the completion offers for LINE (the cursor at its
# end; a trailing space starts a new word), sorted, on one line.
cat >"$work/run.bash" <<'BASH'
. "$1"
shift
cd "$1"
shift
for line in "$@"; do
    read -r -a COMP_WORDS <<<"$line"
    [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _sockbus
    printf '%s\n' "$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"
done
BASH

expect() { # LINE WANT (WANT: the sorted words, or a shell pattern)
    got=$(bash "$work/run.bash" "$completion" "$work" "$1")
    # shellcheck disable=SC2254
    case $got in
    $2) echo "check_completion: '$1' -> $got" ;;
    *)
        echo "check_completion: '$1': expected '$2', got '$got'" >&2
        status=1
        ;;
    esac
}

expect "sockbus " "bench help pub reply req stat sub wait"
expect "sockbus pu" "pub"
expect "sockbus --v" "--version"
expect "sockbus help s" "stat sub"
expect "sockbus sub --j" "--json"
expect "sockbus pub --re" "--reply --retain"
expect "sockbus sub -s dir/b" "dir/bus.sock"
expect "sockbus req --socket dir/" "dir/bus.sock"
expect "sockbus sub --socket = dir/b" "dir/bus.sock"
expect "sockbus sub " ""
expect "sockbus sub -q workers 'a.>' " ""
expect "sockbus pub -- x.y --r" ""
expect "sockbus bench th" "thru"
expect "sockbus bench -q th" "thru"
expect "sockbus bench --svg dir/b" "dir/bus.sock"
expect "sockbus bench -T unix,raw-" "unix,raw-tcp unix,raw-unix"
expect "sockbus reply time.now -- dat" "*date*"
expect "sockbus reply time.now -- date dir/b" "dir/bus.sock"
exit $status
