#!/usr/bin/env bash
# Runs every test (what `make test` runs after building), and if any fails, ends its output with
# each failure and what it recorded: a CI log that keeps only its last lines still says why.
set -uo pipefail
log=$(mktemp /tmp/decos-test.XXXXXX.log)
swift test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    echo
    echo "== what failed (the whole log: $log) =="
    # An issue's line and the lines of detail (↳) after it, each issue once.
    awk '/✘ .*recorded an issue/ { detail = !seen[$0]++; n = 0; if (detail) print; next }
         detail && /^↳|^  / && n < 12 { print; n++; next }
         { detail = 0 }' "$log" | head -200
    grep "✘ Test .* failed after" "$log" | head -50
fi
exit "$status"
