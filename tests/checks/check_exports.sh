#!/bin/sh
# libsockbus exports its public API and nothing else:
#   check_exports.sh LIBRARY HEADER VERSION_SCRIPT
# - every defined dynamic symbol is an sb_ function (-fvisibility=hidden
#   and the version script), besides the version node itself;
# - the exported functions are exactly those the header declares with
#   SB_EXPORT, and exactly those the version script lists;
# - each carries the name of a version node of the script
#   (sb_close@@SOCKBUS_0.1, sb_state@@SOCKBUS_0.2; an older version of a
#   function that changed: sb_connect@SOCKBUS_0.1 beside
#   sb_connect@@SOCKBUS_0.2).
set -eu
lib=$1
header=$2
map=$3
status=0

# "NAME@@VERSION" (or NAME) of each defined dynamic symbol but the node.
symbols=$(nm -D --defined-only "$lib" | awk 'NF == 3 && $2 != "A" { print $3 }')
others=$(printf '%s\n' "$symbols" | grep -v '^sb_' || true)
if [ -n "$others" ]; then
    echo "check_exports: $lib exports symbols outside sb_: $others" >&2
    status=1
fi
nodes=$(sed -n 's/^\([A-Z_0-9.]*\) *{.*/\1/p' "$map")
node=$(printf '%s\n' "$nodes" | tail -n 1)
pattern=$(printf '%s\n' "$nodes" | sed 's/\./\\./g; s/^/@@?/; s/$/$/' | paste -sd '|' -)
unversioned=$(printf '%s\n' "$symbols" | grep -Ev "$pattern" || true)
if [ -n "$unversioned" ]; then
    echo "check_exports: symbols without a version of $(basename "$map"): $unversioned" >&2
    status=1
fi

exported=$(printf '%s\n' "$symbols" | sed 's/@.*//' | sort -u)
declared=$(sed -n 's/^SB_EXPORT .*[ *]\(sb_[a-z0-9_]*\)(.*/\1/p' "$header" | sort)
listed=$(sed -n 's/^ *\(sb_[a-z0-9_]*\);.*/\1/p' "$map" | sort -u)
if [ "$exported" != "$declared" ]; then
    echo "check_exports: exported but not declared in $(basename "$header"), or the reverse:" >&2
    printf '%s\n' "$exported" >"${TMPDIR:-/tmp}/sb-exported.$$"
    printf '%s\n' "$declared" | diff "${TMPDIR:-/tmp}/sb-exported.$$" - >&2 || true
    rm -f "${TMPDIR:-/tmp}/sb-exported.$$"
    status=1
fi
if [ "$declared" != "$listed" ]; then
    echo "check_exports: declared in $(basename "$header") but not listed in $(basename "$map"), or the reverse:" >&2
    printf '%s\n' "$declared" >"${TMPDIR:-/tmp}/sb-declared.$$"
    printf '%s\n' "$listed" | diff "${TMPDIR:-/tmp}/sb-declared.$$" - >&2 || true
    rm -f "${TMPDIR:-/tmp}/sb-declared.$$"
    status=1
fi
count=$(printf '%s\n' "$exported" | grep -c '^sb_' || true)
[ "$count" -gt 0 ] || status=1
[ $status -eq 0 ] &&
    echo "check_exports: $lib exports the $count sb_ functions of $(basename "$header"), versions up to $node, and nothing else"
exit $status
