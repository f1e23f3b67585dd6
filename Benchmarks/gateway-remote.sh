#!/usr/bin/env bash
# A gateway POST answered by another node against the same POST answered by the gateway's own
# node, in the same run: a SOAP Get of /counter on node1's gateway, then of /@node2/counter
# through it, from wrk (16 keep-alive connections). Alternating, ROUNDS rounds (issue 21's aim:
# through another node >= 0.9x the node's own). Where each runs, LAYOUT=:
#   shared (default, as docs/performance.md's figures were taken) both nodes on core 0, wrk on
#          core 1: the call through node2 also pays node2's work out of node1's core;
#   apart  node1 on core 0; node2 and wrk on core 1: node1 has its core whichever node answers
#          (node2 shares its core with the load generator: two cores allow no better).
#
#   Benchmarks/gateway-remote.sh [DECOS_BINARY]     env: ROUNDS=3 DURATION=8 LAYOUT=shared
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/decos}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
LAYOUT=${LAYOUT:-shared}
case "$LAYOUT" in
  apart) cores=(0 1) ;;
  shared) cores=(0 0) ;;
  *) echo "LAYOUT is apart or shared, not $LAYOUT" >&2; exit 2 ;;
esac
dir=$(mktemp -d)
pids=()
trap 'kill ${pids[@]} 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster.key"
cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/soap+xml"
wrk.body = '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action></env:Header><env:Body/></env:Envelope>'
LUA

for i in 1 2; do
  taskset -c "${cores[$((i - 1))]}" "$bin" run examples/node.xml --node "node$i" --http "127.0.0.1:1848$i" --listen "127.0.0.1:1895$i" \
    --seed 127.0.0.1:18951 --cluster-key "$dir/cluster.key" >"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
# Ready when node1 lists node2's counter (a deadline, not a sleep: 60 s).
for _ in $(seq 1 600); do
  curl -s --max-time 1 http://127.0.0.1:18481/directory | grep -q "decos://node2/counter" && break
  sleep 0.1
done
curl -s --max-time 1 http://127.0.0.1:18481/directory | grep -q "decos://node2/counter" || { echo "the nodes did not form a cluster" >&2; cat "$dir"/node*.log >&2; exit 1; }

load() {  # load URL: "req/s p50 p99" from wrk on core 1
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency -s "$dir/post.lua" "$1" |
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print r, p50, p99}'
}

taskset -c 1 wrk -t1 -c16 -d2s -s "$dir/post.lua" http://127.0.0.1:18481/@node2/counter >/dev/null  # warm-up
echo "layout $LAYOUT: node1 on core ${cores[0]}, node2 on core ${cores[1]}, wrk on core 1"
for r in $(seq 1 "$ROUNDS"); do
  read -r own own50 own99 <<<"$(load http://127.0.0.1:18481/counter)"
  read -r far far50 far99 <<<"$(load http://127.0.0.1:18481/@node2/counter)"
  echo "round $r  own node: $own req/s (p50 $own50, p99 $own99)  through to node2: $far req/s (p50 $far50, p99 $far99)" \
    "  ratio $(awk -v a="$far" -v b="$own" 'BEGIN {printf "%.2f", a/b}')"
done
