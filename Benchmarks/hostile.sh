#!/usr/bin/env bash
# One node under hostile clients and peers, against itself unloaded in the same run
# (docs/reliability.md, "Hostile input"). Two release-build nodes, a and b, form a cluster on
# loopback (so a has a real peer); node a is measured unloaded, then while Benchmarks/hostile.py
# holds at once:
#   - SLOWLORIS=400 HTTP connections to a's gateway, each sending an unfinished request head a few
#     bytes every 2-4 s (one the node closes is opened again),
#   - IDLE=300 TCP connections to a's cluster port that never finish a handshake (half send
#     nothing, half the first bytes of a HELLO; one the node closes is opened again),
#   - DATAGRAMS=60000 UDP datagrams to a's cluster port at RATE=3000/s, half random bytes, half
#     framed as membership datagrams but sealed with no key the node holds.
# Measured: a's RSS (VmRSS) before and at the end of the load (and its peak, and its open files);
# p50/p99 of CALLS=300 sequential `curl` GETs of a's /counter (a new connection each, curl's
# time_total) unloaded and loaded; remote GETs of b's counter through a (/@b/counter) unloaded and
# loaded: how many answered 200, and their p50; whether b stayed listed in a's directory.
#
#   Benchmarks/hostile.sh          env: ROUNDS=2 (each a fresh pair of nodes) CALLS=300 REMOTE=50
#
# Node a runs on core 0, b and the load on core 1. Needs python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
rounds=${ROUNDS:-2} calls=${CALLS:-300} remote=${REMOTE:-50}
slowloris=${SLOWLORIS:-400} idle=${IDLE:-300} datagrams=${DATAGRAMS:-60000} rate=${RATE:-3000}
swift build -c release --product decos >/dev/null
bin=$PWD/.build/release/decos
work=$(mktemp -d)
pids=()
source Benchmarks/stop.sh
cleanup() {
  touch "$work"/*/stop 2>/dev/null || true
  [ ${#pids[@]} -gt 0 ] && stop "${pids[@]}"
  rm -rf "$work"
}
trap cleanup EXIT

# Four ports free for TCP and UDP alike: a's and b's gateways and cluster ports.
read -r http_a http_b cluster_a cluster_b <<<"$(python3 - <<'PY'
import socket
ports, held = [], []
while len(ports) < 4:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try: u.bind(("127.0.0.1", p))
    except OSError: t.close(); continue
    held += [t, u]; ports.append(p)
print(*ports)
PY
)"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/key"

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
# samples FILE N URL: N sequential GETs, one time_total (ms) per line for each 200.
samples() {
  : >"$1"
  for _ in $(seq "$2"); do
    curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}\n' "$3" | awk '$1 == 200 {printf "%.3f\n", $2 * 1000}' >>"$1" || true
  done
}
pct() { sort -n "$1" | awk -v q="$2" '{a[NR]=$1} END {if (NR == 0) {print "-"; exit} i=int(NR*q+0.5); if (i<1) i=1; if (i>NR) i=NR; printf "%.2f", a[i]}'; }
lists_b() { curl -s --max-time 5 "http://127.0.0.1:$http_a/directory" | grep -q '<Uri>decos://b/counter</Uri>'; }
metric() { curl -s --max-time 5 "http://127.0.0.1:$http_a/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%d", s}'; }

echo "== hostile: node a unloaded, then under ${slowloris} slowloris HTTP connections, ${idle} idle cluster connections and ${datagrams} bad datagrams at once (${rounds} rounds)"
for r in $(seq "$rounds"); do
  w=$work/$r; mkdir -p "$w"
  taskset -c 0 "$bin" run examples/node.xml --node a --http "127.0.0.1:$http_a" --listen "127.0.0.1:$cluster_a" \
    --cluster-key "$work/key" >"$w/a.log" 2>&1 &
  pid_a=$!; pids+=("$pid_a")
  taskset -c 1 "$bin" run examples/node.xml --node b --http "127.0.0.1:$http_b" --listen "127.0.0.1:$cluster_b" \
    --seed "127.0.0.1:$cluster_a" --cluster-key "$work/key" >"$w/b.log" 2>&1 &
  pid_b=$!; pids+=("$pid_b")
  for _ in $(seq 300); do lists_b && break; sleep 0.1; done
  lists_b || { echo "hostile: the cluster did not form" >&2; cat "$w/a.log" "$w/b.log" >&2; exit 1; }
  sleep 2
  url=http://127.0.0.1:$http_a
  samples "$w/get0" 20 "$url/counter"  # warm-up, not counted
  rss0=$(rss_mib "$pid_a") fds0=$(ls "/proc/$pid_a/fd" | wc -l)
  dropped0=$(metric decos_membership_datagrams_dropped_total)
  samples "$w/get0" "$calls" "$url/counter"
  samples "$w/remote0" "$remote" "$url/@b/counter"

  taskset -c 1 python3 Benchmarks/hostile.py 127.0.0.1 "$http_a" "$cluster_a" "$w" --slowloris "$slowloris" \
    --idle "$idle" --datagrams "$datagrams" --rate "$rate" --max-seconds 180 >"$w/load.log" 2>&1 &
  load=$!; pids+=("$load")
  ( peak=0; while kill -0 "$load" 2>/dev/null && kill -0 "$pid_a" 2>/dev/null; do
      v=$(awk '/VmRSS/ {print $2}' "/proc/$pid_a/status" 2>/dev/null || echo 0); [ "${v:-0}" -gt "$peak" ] && peak=$v
      echo "$peak" >"$w/peak"; sleep 0.5; done ) &
  pids+=("$!")
  for _ in $(seq 600); do [ -e "$w/ready" ] && break; sleep 0.1; done
  sleep 3  # every connection open, the datagrams flowing
  held_http=$(ss -Htn state established "( sport = :$http_a )" | wc -l)
  held_cluster=$(ss -Htn state established "( sport = :$cluster_a )" | wc -l)
  samples "$w/get1" "$calls" "$url/counter"
  samples "$w/remote1" "$remote" "$url/@b/counter"
  for _ in $(seq 1200); do [ -e "$w/datagrams-done" ] && break; sleep 0.1; done
  sleep 1
  alive=yes; kill -0 "$pid_a" 2>/dev/null || alive=NO
  rss1=$(rss_mib "$pid_a" 2>/dev/null || echo "?") fds1=$(ls "/proc/$pid_a/fd" 2>/dev/null | wc -l)
  lists_b && listed=yes || listed=NO
  dropped1=$(metric decos_membership_datagrams_dropped_total)
  touch "$w/stop"; wait "$load" || true
  sleep 5
  rss2=$(rss_mib "$pid_a" 2>/dev/null || echo "?") fds2=$(ls "/proc/$pid_a/fd" 2>/dev/null | wc -l)
  peak=$(awk '{printf "%.1f", $1 / 1024}' "$w/peak" 2>/dev/null || echo "?")
  deaths=$(cat "$w/a.log" "$w/b.log" | grep -c " is dead " || true)
  stop "$pid_a" "$pid_b"

  # shellcheck disable=SC1090
  . <(sed 's/^\([a-z_0-9]*\)=\(.*\)$/\1="\2"/' "$w/summary")
  awk -v a="$rss0" -v b="$rss1" -v p="$peak" -v c="$rss2" -v r="$r" \
    'BEGIN {printf "hostile: round %d: rss unloaded %s MiB, loaded %s MiB (%+.1f MiB); peak %s MiB; 5 s after the load %s MiB\n", r, a, b, b - a, p, c}'
  awk -v a="$(pct "$w/get0" 0.5)" -v b="$(pct "$w/get0" 0.99)" -v c="$(pct "$w/get1" 0.5)" -v d="$(pct "$w/get1" 0.99)" \
      -v n0="$(wc -l <"$w/get0")" -v n1="$(wc -l <"$w/get1")" -v n="$calls" -v r="$r" \
    'BEGIN {printf "hostile: round %d: GET p50/p99 unloaded %s/%s ms, loaded %s/%s ms (ratio p99 %.2f; 200s %d/%d and %d/%d)\n", r, a, b, c, d, d / b, n0, n, n1, n}'
  echo "hostile: round $r: GET /@b/counter through a: unloaded $(wc -l <"$w/remote0")/$remote answered, p50 $(pct "$w/remote0" 0.5) ms; loaded $(wc -l <"$w/remote1")/$remote answered, p50 $(pct "$w/remote1" 0.5) ms, p99 $(pct "$w/remote1" 0.99) ms"
  echo "hostile: round $r: node a alive at the end: $alive; lists b under load: $listed; deaths declared: $deaths; open files ${fds0} unloaded, ${fds1} loaded, ${fds2} 5 s after"
  echo "hostile: round $r: load ${seconds} s: slowloris opened ${slowloris_opened} (closed by the node ${slowloris_closed_by_node}, answered ${slowloris_answered}${slowloris_answer_statuses:+: $slowloris_answer_statuses}), established on the gateway port while measuring ${held_http}"
  echo "hostile: round $r: idle peers opened ${idle_opened}, closed by the node ${idle_closed_by_node} (held p50 ${idle_held_ms_p50} ms, max ${idle_held_ms_max} ms), established on the cluster port while measuring ${held_cluster}"
  echo "hostile: round $r: datagrams sent ${datagrams_sent} (send errors ${datagrams_failed}); decos_membership_datagrams_dropped_total +$((dropped1 - dropped0))"
  pids=()
done
