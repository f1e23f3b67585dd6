#!/usr/bin/env bash
# The console's page weight and time to first render (issue 12): a local cluster of three nodes
# (scripts/local-cluster.sh, release build), its page at node 1 loaded ROUNDS times in headless
# chromium, each time against the same page loaded from a file (the baseline: the browser's own
# parsing and painting, with no node in the way).
#
#   Benchmarks/console.sh          env: ROUNDS=5
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
rounds=${ROUNDS:-5}
swift build -c release --product decos >/dev/null
setsid scripts/local-cluster.sh >/dev/null 2>&1 &
cluster=$!
trap 'kill -- -$cluster 2>/dev/null' EXIT
# The page is whole once node 1 lists all three nodes' counters.
for _ in $(seq 1 200); do
  [ "$(curl -s http://127.0.0.1:7481/directory | grep -o '/counter</Uri>' | wc -l)" = 3 ] && break
  sleep 0.1
done
/usr/bin/python3 Benchmarks/console.py http://127.0.0.1:7481/ "$rounds"
