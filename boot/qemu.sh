#!/usr/bin/env bash
# Boots the image in $OUT under QEMU: serial console on this terminal (or stdout when there is
# none, as in CI), the node's gateway forwarded to 127.0.0.1:$HTTP_PORT. Software emulation (TCG)
# unless ACCEL=kvm. The guest gets its address from QEMU's DHCP server
# through our DHCP client. Powering the node off ends QEMU with status 0.
#
#   boot/qemu.sh            kernel and initramfs given to QEMU directly
#   boot/qemu.sh --netboot  firmware PXE → iPXE → boot.ipxe over TFTP → the same kernel and initramfs
#
# env: ACCEL=tcg OUT=out HTTP_PORT=7480 GUEST_PORT=7480 MEM=512 SMP=1 MAC=52:54:00:12:34:56 APPEND= NO_REBOOT=
#      LAN=230.0.0.1:PORT LAN_MAC=… (a second NIC on a shared LAN, see boot/cluster.sh) QEMU_EXTRA=
#      NUMA=2 (two NUMA nodes, MEM halved between them, one CPU each: needs SMP=2; the NICs sit
#      behind a PCI expander bridge on node 1, as a NIC in the second socket's slots would)
#      DISK=$OUT/data.img (the data disk, a virtio disk over a sparse raw file, made if missing and
#      kept, so the node's durable state outlives QEMU; DISK=none for none) DISK_SIZE=256M
set -euo pipefail
out=${OUT:-out}
http_port=${HTTP_PORT:-7480}
guest_port=${GUEST_PORT:-7480}
mac=${MAC:-52:54:00:12:34:56}
netboot=0
[ "${1:-}" = "--netboot" ] && netboot=1

for f in vmlinuz initrd.img cmdline boot.ipxe; do
  [ -f "$out/$f" ] || { echo "boot: no $out/$f; build the image first: make image" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "boot: qemu-system-x86_64 is not installed (make deps)" >&2; exit 1; }

accel=${ACCEL:-tcg}
cpu=max; [ $accel = kvm ] && cpu=host,-arch-capabilities
mem=${MEM:-512}
args=(-machine pc,accel=$accel -cpu $cpu -m "$mem" -smp "${SMP:-1}" -nographic)
nic_bus=
if [ "${NUMA:-1}" = 2 ]; then
  [ "${SMP:-1}" -ge 2 ] || { echo "boot: NUMA=2 needs SMP=2 (a CPU per node)" >&2; exit 1; }
  for n in 0 1; do
    args+=(-object "memory-backend-ram,id=m$n,size=$((mem / 2))M" -numa "node,nodeid=$n,cpus=$n,memdev=m$n")
  done
  args+=(-device pxb,id=pxb1,bus=pci.0,bus_nr=16,numa_node=1)
  nic_bus=",bus=pxb1"
fi
[ -n "${NO_REBOOT:-}" ] && args+=(-no-reboot)
net="user,id=n0,hostfwd=tcp:127.0.0.1:${http_port}-:${guest_port}"
if [ $netboot = 1 ]; then
  # QEMU's user network serves DHCP with a boot file name and TFTP from $OUT; the NIC's iPXE ROM
  # fetches boot.ipxe, which fetches vmlinuz and initrd.img from the same place.
  net="$net,tftp=$out,bootfile=boot.ipxe"
  args+=(-boot n)
else
  args+=(-kernel "$out/vmlinuz" -initrd "$out/initrd.img" -append "$(cat "$out/cmdline") ${APPEND:-}")
fi
args+=(-netdev "$net" -device "virtio-net-pci,netdev=n0,mac=$mac${nic_bus:+$nic_bus,addr=0x4}")
if [ -n "${LAN:-}" ]; then
  # A second NIC (eth1) on a LAN shared with other VMs: QEMU's multicast socket netdev, no root needed.
  args+=(-netdev "socket,id=n1,mcast=$LAN,localaddr=127.0.0.1" -device "virtio-net-pci,netdev=n1,mac=${LAN_MAC:?LAN needs LAN_MAC}${nic_bus:+$nic_bus,addr=0x5}")
  # Each VM's frames reach the others as datagrams on one UDP socket per VM, whose receive buffer
  # is the host's default (208 KiB): a burst of bulk data (a buffer moved by Soft-RoCE) overflows
  # it, and every dropped frame costs RoCE a retransmission timeout — 6x slower here. Where we may,
  # the default is raised, once, and said.
  rmem=$(cat /proc/sys/net/core/rmem_default 2>/dev/null || echo 0)
  if [ "$rmem" -lt 8388608 ] && [ -w /proc/sys/net/core/rmem_default ]; then
    echo 8388608 > /proc/sys/net/core/rmem_default
    echo "boot: raised net.core.rmem_default from $rmem to 8 MiB so the shared LAN does not drop bursts"
  fi
fi
# The data disk: the node formats it ext4 on its first boot (only if it is blank) and keeps its
# durable services' state on it. The file is reused as it is, so that state survives QEMU ending.
disk=${DISK:-$out/data.img}
if [ "$disk" != none ]; then
  if [ ! -e "$disk" ]; then
    truncate -s "${DISK_SIZE:-256M}" "$disk" || { echo "boot: cannot make the data disk $disk" >&2; exit 1; }
    echo "boot: data disk $disk: new, ${DISK_SIZE:-256M} (sparse); the node formats it on its first boot"
  else
    echo "boot: data disk $disk: $(( $(stat -c %s "$disk") >> 20 )) MiB, kept from before"
  fi
  # Flushes the guest asks for reach the file (cache=writeback honours them); discard keeps it sparse.
  # On the root bus by name: with NUMA=2 the default would be the expander bridge's, which takes none.
  args+=(-drive "file=$disk,format=raw,if=none,id=data,discard=unmap" -device "virtio-blk-pci,drive=data,bus=pci.0")
fi
echo "boot: qemu ($accel) — gateway at http://127.0.0.1:${http_port}/; power off with:"
echo "boot:   decos ctl poweroff http://127.0.0.1:${http_port} --token @$out/operator.token    (or Ctrl-A X to kill QEMU)"
# shellcheck disable=SC2086
exec qemu-system-x86_64 "${args[@]}" ${QEMU_EXTRA:-}
