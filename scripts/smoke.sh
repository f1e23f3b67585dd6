#!/usr/bin/env bash
# Smoke test of a built decos binary (the static one in CI): boots the example manifest, answers a
# request, and stops cleanly on SIGTERM with status 0 — what optimized builds must do too.
set -euo pipefail
bin=${1:?usage: scripts/smoke.sh DECOS_BINARY}
log=$(mktemp)
"$bin" run examples/node.xml --http 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "serving http" "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
[ -n "$url" ] || { echo "smoke: $bin did not become ready" >&2; cat "$log" >&2; exit 1; }
curl -sf "$url/counter" | grep -q "<CounterState>" || { echo "smoke: GET /counter failed" >&2; exit 1; }
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "smoke: $bin exited $status on SIGTERM" >&2; cat "$log" >&2; exit 1; }
grep -q "stopped" "$log" || { echo "smoke: no orderly stop" >&2; exit 1; }
echo "smoke: $bin boots, serves and stops cleanly"
rm -f "$log"
