#!/usr/bin/env bash
# Every Decos benchmark, one command: `make bench` (or Benchmarks/run.sh).
# Each figure is printed beside a baseline measured in the same run. The node runs pinned to
# core 0 and the load generator to core 1, so "per core" figures mean one core.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
DURATION=${DURATION:-10}

echo "== build (release)"
swift build -c release --product decos >/dev/null
swift build -c release --product decos-bench >/dev/null
bin=.build/release

echo "== local dispatch and XML (one core)"
taskset -c 0 $bin/decos-bench all 2>/dev/null

# Starts a server command on core 0 and prints its port once it is ready.
start() {
  local log; log=$(mktemp)
  taskset -c 0 "$@" >"$log" 2>/dev/null &
  echo $! > "$log.pid"
  for _ in $(seq 1 200); do
    if grep -qo 'http://127.0.0.1:[0-9]*' "$log"; then grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://'; return; fi
    sleep 0.05
  done
  echo "server did not start: $*" >&2; cat "$log" >&2; exit 1
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

load() {  # load URL [lua-script]: requests/s from wrk on core 1, 16 keep-alive connections
  local script=()
  [ -n "${2:-}" ] && script=(-s "$2")
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency "${script[@]}" "$1" | awk '/Requests\/sec/ {print $2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print "p50=" p50 " p99=" p99}'
}

post_script=$(mktemp --suffix=.lua)
cat > "$post_script" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/soap+xml"
wrk.body = '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action></env:Header><env:Body/></env:Envelope>'
LUA

echo "== gateway (node on core 0, wrk on core 1, ${DURATION}s each)"
port=$(start $bin/decos run examples/node.xml --http 127.0.0.1:0)
pid=$(pgrep -n -f "decos run examples/node.xml --http 127.0.0.1:0")
sleep 1
idle=$(rss_kib "$pid")
floor_port=$(start $bin/decos-bench http-floor)
floor_pid=$(pgrep -n -f "decos-bench http-floor")
get=$(load "http://127.0.0.1:$port/counter")
post=$(load "http://127.0.0.1:$port/counter" "$post_script")
floor=$(load "http://127.0.0.1:$floor_port/counter")
busy=$(rss_kib "$pid")
kill "$pid" "$floor_pid"
read -r get_rps get_lat <<<"$(echo $get)"
read -r post_rps post_lat <<<"$(echo $post)"
read -r floor_rps floor_lat <<<"$(echo $floor)"
echo "gateway GET  /counter (state XML):       ${get_rps} req/s  ${get_lat}"
echo "gateway POST /counter (SOAP Get):        ${post_rps} req/s  ${post_lat}"
echo "baseline bare SwiftNIO HTTP/1.1 server:  ${floor_rps} req/s  ${floor_lat}  (same fixed reply, no kernel)"
awk -v a="$get_rps" -v b="$post_rps" -v f="$floor_rps" 'BEGIN {printf "ratio    GET %.2f, POST %.2f of the bare server\n", a/f, b/f}'

echo "== between nodes (two nodes in one process on loopback, pinned to core 1)"
taskset -c 1 $bin/decos-bench remote calls 2>/dev/null
taskset -c 1 $bin/decos-bench remote buffers 2>/dev/null

echo "== a gateway POST answered by another node against the gateway's own (two nodes on core 0, wrk on core 1)"
ROUNDS=1 DURATION=$DURATION Benchmarks/gateway-remote.sh $bin/decos

echo "== memory"
$bin/decos-bench idle & base_pid=$!
sleep 1
base=$(rss_kib "$base_pid")
kill "$base_pid"
echo "idle node RSS (release build, example manifest): ${idle} KiB; after the load: ${busy} KiB"
echo "baseline: a Swift process with the same libraries, doing nothing: ${base} KiB"
if [ -x .build-static/release/decos ]; then
  port=$(start .build-static/release/decos run examples/node.xml --http 127.0.0.1:0)
  spid=$(pgrep -n -f ".build-static/release/decos run")
  sleep 1
  echo "idle node RSS (static binary): $(rss_kib "$spid") KiB; binary $(stat -c %s .build-static/release/decos) bytes"
  kill "$spid"
fi
rm -f "$post_script"

echo "== device-driver kernel: the module index of the image's kernel (full Debian tree)"
taskset -c 0 $bin/decos-bench modindex "$(ls /lib/modules | sort -V | tail -1)" 2>/dev/null

echo "== membership and namespace spread, simulated (SWIM_NODES=${SWIM_NODES:-1000}, 5% loss; minutes for 1000)"
$bin/decos-bench swim "${SWIM_NODES:-1000}" 0.05 2>/dev/null
