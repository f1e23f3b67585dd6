#!/usr/bin/env bash
# The RDMA plane against perftest's ib_read_bw, between the same two QEMU VMs with Soft-RoCE on
# one virtual LAN (jumbo frames: RoCE MTU 4096), the same message size, in the same run.
#
#   Benchmarks/rdma.sh          env: MIB=256 (bytes moved per measurement) ROUNDS=3
#
# Each round boots the two VMs afresh: the client VM's ib_read_bw (a <Process> in its manifest;
# perftest and its libraries are put in the image by mkimage.sh TOOLS=) READs MIB × 1 MiB from the
# server VM's as they boot; then decos moves one buffer of MIB MiB between the same two VMs by its
# RDMA plane (/os/dataplane's SendTest: n2 READs it from n1 in 1 MiB READs, eight in flight),
# twice, the second measured (the first also sets up the queue pair and registers memory). For
# each, MB/s and the CPU both VMs spent per GiB (the QEMU processes' CPU time over the transfer:
# under emulation all of Soft-RoCE's work is guest CPU). Needs root (the LAN's socket buffers),
# QEMU, perftest (make deps) and the static decos (make static).
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${MIB:-256} rounds=${ROUNDS:-3}
export PATH=/opt/swift/usr/bin:$PATH
command -v ib_read_bw >/dev/null || { echo "rdma: no ib_read_bw (apt-get install perftest; make deps)" >&2; exit 1; }
[ -x .build-static/release/decos ] || make static >/dev/null
swift build --product decos >/dev/null
decos=.build/debug/decos
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Two images sharing one cluster key: n1 runs the ib_read_bw client (retried until the server
# listens), n2 the server. Each runs decos too, as every node does.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/cluster.key"
for role in client server; do
  args="<Arg>-d</Arg><Arg>rxe0</Arg><Arg>-x</Arg><Arg>1</Arg><Arg>-s</Arg><Arg>1048576</Arg><Arg>-n</Arg><Arg>$mib</Arg><Arg>-F</Arg><Arg>--report_gbits</Arg>"
  [ $role = client ] && args="$args<Arg>10.77.4.2</Arg>"
  cat > "$work/$role.xml" <<XML
<Manifest xmlns="urn:decos:manifest" node="$role">
  <Network>
    <Gateway listen="0.0.0.0:7480" requestTimeout="1800"/>
    <Cluster listen="0.0.0.0:7946" probeTimeout="900" suspicionTimeout="30000" requestTimeout="60"/>
  </Network>
  <Process name="ib-read-bw" path="/usr/bin/ib_read_bw" restart="on-failure">$args</Process>
</Manifest>
XML
  OUT=$work/$role CLUSTER_KEY=$work/cluster.key TOOLS=/usr/bin/ib_read_bw ZSTD_LEVEL=3 \
    boot/mkimage.sh "$work/$role.xml" .build-static/release/decos > "$work/$role-image.log"
done

cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # clock ticks, user + system
ticks=$(getconf CLK_TCK)
round() {
  local lan="230.0.0.1:$((20000 + RANDOM % 20000))" i role
  pids=()
  for i in 1 2; do
    role=client; [ $i = 2 ] && role=server
    OUT=$work/$role HTTP_PORT=$((7700 + i)) NO_REBOOT=1 MEM=3072 MAC=52:54:00:12:35:0$i LAN=$lan LAN_MAC=52:54:00:77:04:0$i \
      APPEND="decos.node=n$i decos.ip=eth1:10.77.4.$i/24 decos.listen=10.77.4.$i:7946 decos.seed=10.77.4.1:7946 decos.rxe=eth1 decos.mtu=9000" \
      boot/qemu.sh > "$work/n$i.log" 2>&1 < /dev/null &
    pids+=($!)
    disown $!  # killed at the round's end: no job-control notice for it
  done
  # perftest: CPU of both VMs from the client's first line to its result.
  local start=0 c0=0 line=""
  for _ in $(seq 1 3000); do
    if [ $start = 0 ] && grep -aq "RDMA_Read BW Test" "$work/n1.log"; then start=1; c0=$(( $(cpu ${pids[0]}) + $(cpu ${pids[1]}) )); fi
    line=$(grep -aE "^ *1048576 +$mib " "$work/n1.log" | head -1 || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || { echo "rdma: ib_read_bw gave no result; the client's console:" >&2; tail -30 "$work/n1.log" >&2; exit 1; }
  local c1=$(( $(cpu ${pids[0]}) + $(cpu ${pids[1]}) ))
  local perf=$(echo "$line" | awk '{ print $4 * 125 }')   # BW average, Gb/s (10^9) to MB/s (10^6)
  local perfcpu=$(awk -v t=$((c1 - c0)) -v h="$ticks" -v m="$mib" 'BEGIN { printf "%.1f", t / h / (m / 1024) }')
  # decos: the same bytes, one buffer, n1 -> n2 on the RDMA plane.
  for _ in $(seq 1 600); do
    curl -sf -m 5 "http://127.0.0.1:7701/os/dataplane" 2>/dev/null | grep -q "<Node>n2</Node><Offers>tcp rdma</Offers><Chosen>rdma</Chosen>" && break
    sleep 0.2
  done
  # Twice: the first sets up the queue pair and registers both sides' pool blocks (what
  # ib_read_bw does before it starts its clock); the second finds them ready, as every later
  # buffer of that size does (the registration cache).
  local out cold
  send() {
    $decos ctl submit http://127.0.0.1:7701/os/dataplane --token @"$work/client/operator.token" \
      --body "<SendTest><To>decos://n2/os/dataplane</To><Bytes>$((mib << 20))</Bytes></SendTest>"
  }
  mbps() { echo "$1" | sed -n 's:.*<MegabytesPerSecond>\(.*\)</MegabytesPerSecond>.*:\1:p'; }
  cold=$(send)
  c0=$(( $(cpu ${pids[0]}) + $(cpu ${pids[1]}) ))
  out=$(send)
  c1=$(( $(cpu ${pids[0]}) + $(cpu ${pids[1]}) ))
  for o in "$cold" "$out"; do
    echo "$o" | grep -q "<Intact>true</Intact>" || { echo "rdma: the buffer did not arrive intact: $o" >&2; exit 1; }
  done
  curl -sf "http://127.0.0.1:7702/os/dataplane" | grep -q "<Plane>rdma</Plane><BytesSent>0</BytesSent><BytesReceived>$((2 * mib << 20))</BytesReceived>" \
    || { echo "rdma: not moved by RDMA" >&2; exit 1; }
  local ourcpu=$(awk -v t=$((c1 - c0)) -v h="$ticks" -v m="$mib" 'BEGIN { printf "%.1f", t / h / (m / 1024) }')
  awk -v r="$1" -v p="$perf" -v o="$(mbps "$out")" -v c="$(mbps "$cold")" -v pc="$perfcpu" -v oc="$ourcpu" \
    'BEGIN { printf "round %d: ib_read_bw %.1f MB/s (%s CPU-s/GiB); decos RDMA plane %.1f MB/s (%s CPU-s/GiB), first buffer %.1f MB/s: %.2f of ib_read_bw\n", r, p, pc, o, oc, c, o / p }'
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}

echo "rdma: $mib MiB per measurement, 1 MiB READs, two QEMU VMs (TCG) with Soft-RoCE, RoCE MTU 4096"
for r in $(seq 1 "$rounds"); do round "$r"; done
