#!/bin/sh
# The man pages render without a warning from man(1) and groff at 80
# columns:  check_man.sh PAGE...   (the built pages, build/docs/man/*).
# Exits 77 (skipped) when no page was built (no scdoc) or man is missing.
set -eu
if [ $# -eq 0 ]; then
    echo "check_man: skipped: no man pages were built (scdoc not found)"
    exit 77
fi
if ! command -v man >/dev/null 2>&1; then
    echo "check_man: skipped: man is not installed"
    exit 77
fi
status=0
for page in "$@"; do
    # man prints groff's warnings on stderr; the page itself goes to null.
    warnings=$(MANWIDTH=80 MAN_KEEP_FORMATTING=1 man --warnings -l "$page" 2>&1 >/dev/null) || {
        echo "check_man: man -l $page failed: $warnings" >&2
        status=1
        continue
    }
    if [ -n "$warnings" ]; then
        echo "check_man: $page: $warnings" >&2
        status=1
    else
        echo "check_man: $page renders without warnings"
    fi
done
exit $status
