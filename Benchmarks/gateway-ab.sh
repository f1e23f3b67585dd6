#!/usr/bin/env bash
# Two builds of decos against each other through the gateway, in the same run: GET /counter,
# POST /counter (a SOAP Get), and GET with Connection: close (a connection per request). Node on
# core 0, wrk on core 1 (16 connections, 2 threads), 2 s warm-up then 8 s measured; OLD and NEW
# alternate within each round so the machine's drift hits both. A change on the gateway's path is
# measured this way before it lands (docs/performance.md).
#
#   Benchmarks/gateway-ab.sh OLD_BINARY NEW_BINARY     env: ROUNDS=3
#   (e.g. a release build of the previous commit in a git worktree, and this tree's .build/release/decos)
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] && [ -x "$1" ] && [ -x "$2" ] || { echo "usage: Benchmarks/gateway-ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$1
NEW=$2
MANIFEST=$PWD/examples/node.xml
W=$(mktemp -d)
ROUNDS=${ROUNDS:-3}
mkdir -p "$W/out"
cat > "$W/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/soap+xml"
wrk.body = '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action></env:Header><env:Body/></env:Envelope>'
LUA
port=18200
nodepid=
cleanup() { [ -n "$nodepid" ] && kill "$nodepid" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

start() {  # start BIN PORT LOG
  taskset -c 0 "$1" run "$MANIFEST" --http "127.0.0.1:$2" >"$3" 2>&1 &
  nodepid=$!
  for _ in $(seq 1 200); do  # 10 s at most
    grep -q "serving http://127.0.0.1:$2" "$3" && return 0
    sleep 0.05
  done
  echo "node did not start: $1" >&2; cat "$3" >&2; exit 1
}
stop() {  # SIGTERM, then SIGKILL past 10 s
  kill "$nodepid"
  for _ in $(seq 200); do kill -0 "$nodepid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$nodepid" 2>/dev/null; wait "$nodepid" 2>/dev/null; nodepid=
}

wrkrun() {  # wrkrun LOAD PORT DURATION
  local url="http://127.0.0.1:$2/counter"
  case $1 in
    get)   taskset -c 1 wrk -t2 -c16 -d"$3" --latency "$url" ;;
    post)  taskset -c 1 wrk -t2 -c16 -d"$3" --latency -s "$W/post.lua" "$url" ;;
    close) taskset -c 1 wrk -t2 -c16 -d"$3" --latency -H 'Connection: close' "$url" ;;
  esac
}

echo "run load round bin port req/s p50 p99 non2xx socket_errors"
for r in $(seq 1 "$ROUNDS"); do
  for load in get post close; do
    for which in OLD NEW; do
      bin=$OLD; [ $which = NEW ] && bin=$NEW
      port=$((port + 1))
      tag=$load-r$r-$which
      start "$bin" "$port" "$W/out/$tag.node.log"
      wrkrun "$load" "$port" 2s > "$W/out/$tag.warm.txt" 2>&1
      wrkrun "$load" "$port" 8s > "$W/out/$tag.wrk.txt" 2>&1
      stop
      awk -v t="$load $r $which $port" '
        /Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        /Non-2xx/ {n=$NF} /Socket errors/ {s=$0; sub(/.*Socket errors: */,"",s); gsub(/ /,"",s)}
        END {print t, r, p50, p99, (n==""?0:n), (s==""?"-":s)}' "$W/out/$tag.wrk.txt"
      grep -q Non-2xx "$W/out/$tag.warm.txt" && echo "  (warm-up of $tag: $(grep Non-2xx "$W/out/$tag.warm.txt"))"
    done
  done
done
