#!/bin/sh
# The man pages document every option the programs have, and every command
# of sockbus:  check_man_options.sh MAN_SOURCE_DIR SOCKBUSD SOCKBUS [PROGRAM...]
# Each further PROGRAM (sockbus-nats) is checked against PROGRAM.1.scd.
# An option is what `--help` lists at the start of an option line
# ("  -s, --socket PATH ..."); the page must have it in bold (*--socket*).
set -eu
dir=$1
sockbusd=$2
sockbus=$3
shift 3
status=0

# The long options listed in the option lines of a --help text (stdin).
long_options() {
    grep -E '^ +(-[A-Za-z0-9], )?--[a-z]' | sed -E 's/^ +(-[A-Za-z0-9], )?(--[a-z][a-z-]*).*/\2/'
}

check() { # PAGE WHAT OPTION...
    page=$1
    what=$2
    shift 2
    for opt in "$@"; do
        if ! grep -qF -- "*$opt*" "$page"; then
            echo "check_man_options: $(basename "$page") does not document $what $opt" >&2
            status=1
        fi
    done
}

check "$dir/sockbusd.8.scd" "sockbusd" $("$sockbusd" --help | long_options)
commands=$("$sockbus" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF > 1 && $1 != "Commands:" { print $1 }')
[ -n "$commands" ] || { echo "check_man_options: no commands in sockbus --help" >&2; exit 1; }
for cmd in $commands; do
    if ! grep -qx "## $cmd" "$dir/sockbus.1.scd"; then
        echo "check_man_options: sockbus.1.scd has no section for the command $cmd" >&2
        status=1
    fi
    check "$dir/sockbus.1.scd" "sockbus $cmd" $("$sockbus" "$cmd" --help | long_options)
done
check "$dir/sockbus.1.scd" "sockbus" $("$sockbus" --help | long_options)
for prog in "$@"; do
    name=$(basename "$prog")
    check "$dir/$name.1.scd" "$name" $("$prog" --help | long_options)
done
[ $status -eq 0 ] && echo "check_man_options: every option of sockbusd and of sockbus's commands ($(echo $commands)) is documented${1:+, and of $*}"
exit $status
