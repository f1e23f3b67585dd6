#!/usr/bin/env bash
# The AF_XDP plane against the TCP plane, over the same veth pair between two network namespaces,
# the same buffer, in the same run.
#
#   Benchmarks/xdp.sh          env: MIB=256 (bytes per measurement) ROUNDS=3 MTU=1500 ENCRYPTION=on
#
# Each round starts two nodes (release build), n0 and n1, one in each namespace, first preferring
# AF_XDP for buffers, then TCP, and has n0's /os/dataplane send n1 one buffer of MIB MiB (SendTest:
# filled and checksummed on both sides) twice, the second measured. For each plane: MB/s (the
# self-test's, which leaves out the receiver's checksumming) and the CPU both processes spent per
# GiB over the measured call (filling and checksumming included, the same for both planes). veth
# has no zero-copy AF_XDP: frames are copied into the UMEM by the kernel on both sides. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${MIB:-256} rounds=${ROUNDS:-3} mtu=${MTU:-1500} encryption=${ENCRYPTION:-on}
export PATH=/opt/swift/usr/bin:$PATH
[ "$(id -u)" = 0 ] || { echo "xdp: needs root (namespaces, XDP)" >&2; exit 1; }
swift build -c release --product decos >/dev/null
decos=$PWD/.build/release/decos
work=$(mktemp -d)
tag=$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "xb0-$tag" 2>/dev/null || true; ip netns del "xb1-$tag" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "xb0-$tag"; ip netns add "xb1-$tag"
ip link add eth0 netns "xb0-$tag" mtu "$mtu" type veth peer name eth0 netns "xb1-$tag" mtu "$mtu"
for i in 0 1; do
  ip -n "xb$i-$tag" addr add "10.80.0.$((i + 1))/24" dev eth0
  ip -n "xb$i-$tag" link set eth0 up
  ip -n "xb$i-$tag" link set lo up
done
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/cluster.key"

cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # clock ticks, user + system
ticks=$(getconf CLK_TCK)

# Starts n0 and n1 preferring plane $1, waits until n0 has chosen it for n1.
start() {
  pids=()
  for i in 0 1; do
    local seed=""
    [ $i = 1 ] && seed='<Seed address="10.80.0.1:7946"/>'
    cat > "$work/n$i.xml" <<XML
<Manifest xmlns="urn:decos:manifest">
  <Network>
    <Gateway listen="127.0.0.1:7480" requestTimeout="600"/>
    <Cluster listen="10.80.0.$((i + 1)):7946" keyFile="$work/cluster.key" encryption="$encryption" requestTimeout="60">$seed</Cluster>
    <DataPlane prefer="$1"/>
  </Network>
</Manifest>
XML
    ip netns exec "xb$i-$tag" "$decos" run "$work/n$i.xml" --node "n$i" > "$work/n$i-$1.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 300); do
    ip netns exec "xb0-$tag" curl -sf -m 2 http://127.0.0.1:7480/os/dataplane 2>/dev/null | grep -q "<Node>n1</Node><Offers>[a-z ]*</Offers><Chosen>$1</Chosen>" && return
    sleep 0.1
  done
  echo "xdp: n0 never chose $1 for n1; its log:" >&2; tail -20 "$work/n0-$1.log" >&2; exit 1
}

stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }

send() {
  ip netns exec "xb0-$tag" "$decos" ctl submit http://127.0.0.1:7480/os/dataplane \
    --body "<SendTest><To>decos://n1/os/dataplane</To><Bytes>$((mib << 20))</Bytes></SendTest>"
}
mbps() { echo "$1" | sed -n 's:.*<MegabytesPerSecond>\(.*\)</MegabytesPerSecond>.*:\1:p'; }

# One plane: sets speed (MB/s) and cost (CPU-s/GiB).
measure() {
  start "$1"
  send > /dev/null
  local c0=$(( $(cpu ${pids[0]}) + $(cpu ${pids[1]}) ))
  local out; out=$(send)
  local c1=$(( $(cpu ${pids[0]}) + $(cpu ${pids[1]}) ))
  echo "$out" | grep -q "<Intact>true</Intact>" || { echo "xdp: the buffer did not arrive intact on $1: $out" >&2; exit 1; }
  ip netns exec "xb1-$tag" curl -sf http://127.0.0.1:7480/os/dataplane | grep -q "<Node>n0</Node><Plane>$1</Plane>" \
    || { echo "xdp: not moved by $1" >&2; exit 1; }
  stop
  speed=$(mbps "$out")
  cost=$(awk -v t=$((c1 - c0)) -v h="$ticks" -v m="$mib" 'BEGIN { printf "%.2f", t / h / (m / 1024) }')
}

echo "xdp: $mib MiB per measurement over one veth pair, MTU $mtu, encryption $encryption, release build"
for r in $(seq 1 "$rounds"); do
  measure xdp; x=$speed xc=$cost
  measure tcp; t=$speed tc=$cost
  awk -v r="$r" -v x="$x" -v xc="$xc" -v t="$t" -v tc="$tc" \
    'BEGIN { printf "round %d: AF_XDP plane %.1f MB/s (%s CPU-s/GiB); TCP plane %.1f MB/s (%s CPU-s/GiB): %.2f of TCP\n", r, x, xc, t, tc, x / t }'
done
