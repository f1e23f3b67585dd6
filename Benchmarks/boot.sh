#!/usr/bin/env bash
# Boot figures of the appliance image under QEMU (TCG unless ACCEL=kvm): RUNS boots of out/, each
# read off the guest's own console (CLOCK_BOOTTIME): kernel start → /init, /init → ready and its
# phases, kernel start → ready; then sizes and the node's idle RSS from /os/node. The anchor
# measured in the same run is the kernel's own time to reach /init.
#   Benchmarks/boot.sh        env: RUNS=3 OUT=out HTTP_PORT=7479
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
out=${OUT:-out}
port=${HTTP_PORT:-7479}
[ -f "$out/initrd.img" ] || { echo "boot bench: no image in $out (make image)" >&2; exit 1; }
log=$(mktemp)
for i in $(seq 1 "$runs"); do
  OUT=$out HTTP_PORT=$port NO_REBOOT=1 boot/qemu.sh > "$log" 2>&1 < /dev/null &
  qemu=$!
  for _ in $(seq 1 600); do grep -q "ready with" "$log" && break; sleep 0.1; done
  init=$(grep -o "/init started at [0-9]* ms" "$log" | grep -o "[0-9]*")
  line=$(grep "ready with" "$log")
  rss=$(curl -s -m 10 "http://127.0.0.1:$port/os/node" | grep -o "<ResidentBytes>[0-9]*" | grep -o "[0-9]*")
  echo "boot $i: kernel→/init ${init} ms; $(echo "$line" | grep -o '/init to ready.*'); idle RSS $((rss / 1024)) KiB"
  .build-static/release/decos ctl poweroff "http://127.0.0.1:$port" --token "@$out/operator.token" > /dev/null
  wait $qemu || true
done
rm -f "$log"
echo "initramfs $(stat -c %s "$out/initrd.img") bytes; kernel $(stat -c %s "$out/vmlinuz") bytes; decos $(stat -c %s .build-static/release/decos) bytes"
