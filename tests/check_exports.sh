#!/bin/sh
# libsockbus exports its public API and nothing else: every defined
# dynamic symbol starts with sb_ (the build uses -fvisibility=hidden).
set -eu
lib=$1
others=$(nm -D --defined-only "$lib" | awk 'NF == 3 { print $3 }' | grep -v '^sb_' || true)
if [ -n "$others" ]; then
    echo "check_exports: $lib exports symbols outside sb_: $others" >&2
    exit 1
fi
count=$(nm -D --defined-only "$lib" | awk 'NF == 3 { print $3 }' | grep -c '^sb_')
echo "check_exports: $lib exports $count sb_ symbols and nothing else"
[ "$count" -gt 0 ]
