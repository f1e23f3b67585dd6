#!/usr/bin/env bash
# What the gateway's options cost, each against the same node as it ships, in the same run:
# metrics on (the default) against <Gateway metrics="off"/>, and HTTPS (a self-signed P-256
# certificate, TLS 1.3 as wrk negotiates it) against plain HTTP; and the time to answer a scrape.
#
#   Benchmarks/gateway.sh          env: DURATION=10 (seconds per wrk run) ROUNDS=3
#
# The node (release build, examples/node.xml) runs on core 0, wrk on core 1 (16 keep-alive
# connections: the handshake is paid once per connection). Each round measures GET /counter (a
# Get through the kernel: counted, timed) and POST /counter (a SOAP Get) for each of on, off and
# tls; the ratios are on/off and tls/on per round.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
DURATION=${DURATION:-10} rounds=${ROUNDS:-3}
swift build -c release --product decos >/dev/null
bin=.build/release/decos
work=$(mktemp -d)
cleanup() { [ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

sed 's|<Gateway |<Gateway metrics="off" |' examples/node.xml > "$work/off.xml"
grep -q 'metrics="off"' "$work/off.xml" || { echo "gateway: examples/node.xml has no <Gateway> to turn metrics off on" >&2; exit 1; }
boot/tls-cert.sh bench "$work/tls.crt" "$work/tls.key" >/dev/null
sed "s|<Gateway |<Gateway certificate=\"$work/tls.crt\" key=\"$work/tls.key\" |" examples/node.xml > "$work/tls.xml"
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/soap+xml"
wrk.body = '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action></env:Header><env:Body/></env:Envelope>'
LUA

# Starts the node on a manifest; prints its port once it serves (run as $(start …): its pid goes
# to a file, as a subshell's variables do not come back).
start() {
  local log=$work/node.log
  taskset -c 0 $bin run "$1" --http 127.0.0.1:0 >"$log" 2>&1 &
  echo $! > "$work/pid"
  for _ in $(seq 1 200); do
    if grep -qo 'https\?://127.0.0.1:[0-9]*' "$log"; then grep -o 'https\?://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://'; return; fi
    sleep 0.05
  done
  echo "gateway: node did not start on $1" >&2; cat "$log" >&2; exit 1
}
stop() { local pid; pid=$(cat "$work/pid"); kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; rm -f "$work/pid"; }

load() {  # load URL [script]: "req/s p99"
  local script=()
  [ -n "${2:-}" ] && script=(-s "$2")
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" --latency "${script[@]}" "$1" | awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r, p}'
}

echo "== gateway: metrics on against off, HTTPS against HTTP (${DURATION}s per run, ${rounds} rounds)"
for r in $(seq 1 "$rounds"); do
  declare -A rps=() p99=()
  for mode in on off tls; do
    manifest=examples/node.xml scheme=http
    [ "$mode" = off ] && manifest=$work/off.xml
    [ "$mode" = tls ] && manifest=$work/tls.xml scheme=https
    port=$(start "$manifest")
    read -r rps[get-$mode] p99[get-$mode] <<<"$(load "$scheme://127.0.0.1:$port/counter")"
    read -r rps[post-$mode] p99[post-$mode] <<<"$(load "$scheme://127.0.0.1:$port/counter" "$work/post.lua")"
    if [ "$mode" = on ]; then
      scrape=$(curl -s -o /dev/null -w '%{time_total} %{size_download}' "http://127.0.0.1:$port/metrics")
    fi
    stop
  done
  for k in get post; do
    awk -v k="$k" -v r="$r" -v on="${rps[$k-on]}" -v off="${rps[$k-off]}" -v tls="${rps[$k-tls]}" \
        -v pon="${p99[$k-on]}" -v poff="${p99[$k-off]}" -v ptls="${p99[$k-tls]}" \
      'BEGIN {printf "round %d %-4s on %7.0f req/s p99 %-8s off %7.0f p99 %-8s tls %7.0f p99 %-8s metrics on/off %.3f  https/http %.3f\n", r, toupper(k), on, pon, off, poff, tls, ptls, on/off, tls/on}'
  done
  read -r took bytes <<<"$scrape"
  echo "round $r scrape after the load: ${bytes} bytes in $(awk -v t="$took" 'BEGIN {printf "%.1f", t*1000}') ms"
done
