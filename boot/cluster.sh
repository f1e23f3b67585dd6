#!/usr/bin/env bash
# Boots N VMs of the image in $OUT that form one cluster. Each VM has two NICs: eth0 on its own
# QEMU user network (DHCP; its gateway forwarded to 127.0.0.1:$((BASE_PORT+i))) and eth1 on a LAN
# all VMs share (a QEMU multicast socket), where node nI has 10.77.1.I and joins through n1.
# Consoles are interleaved here, each line prefixed with its node; Ctrl-C stops them all.
#
# Each VM has a data disk of its own, $OUT/data-I.img (made if missing and kept; DISK=none for none).
#
# env: N=3 OUT=out BASE_PORT=7480 LAN=230.0.0.1:PORT (default: a port from this shell's pid) DISK_SIZE=256M
set -euo pipefail
n=${N:-3}
out=${OUT:-out}
base=${BASE_PORT:-7480}
lan=${LAN:-230.0.0.1:$((20000 + $$ % 20000))}
[ "$n" -ge 1 ] && [ "$n" -le 9 ] || { echo "cluster: N must be 1 to 9" >&2; exit 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' INT TERM EXIT
for i in $(seq 1 "$n"); do
  echo "cluster: n$i at 10.77.1.$i, gateway http://127.0.0.1:$((base + i))/"
  disk=$out/data-$i.img; [ "${DISK:-}" = none ] && disk=none
  DISK=$disk OUT=$out HTTP_PORT=$((base + i)) MAC=52:54:00:12:34:0$i LAN=$lan LAN_MAC=52:54:00:77:01:0$i \
    APPEND="decos.node=n$i decos.ip=eth1:10.77.1.$i/24 decos.listen=10.77.1.$i:7946 decos.seed=10.77.1.1:7946" \
    boot/qemu.sh < /dev/null 2>&1 | sed -u "s/^/[n$i] /" &
  pids+=($!)
done
echo "cluster: $n VMs starting; any gateway lists the whole cluster at /directory"
wait
