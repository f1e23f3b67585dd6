#!/usr/bin/env bash
# Installs what building, running and testing Decos need on a fresh Debian machine.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

# nftables drops packets at random in the fault tests (this kernel has no netem);
# qemu-system-x86, ipxe-qemu, linux-image-amd64, cpio and zstd build and boot the node image;
# libibverbs-dev (libibverbs, the rxe and mlx5 providers) and libnl link verbs into decos, statically too;
# libssl-dev's libcrypto seals the frames between nodes (AES-256-GCM), statically too;
# libpci-dev names PCI devices in the hosted build's /os/devices (pciutils' lspci checks it in the tests);
# libsqlite3-dev is the engine that keeps durable services' state, statically too;
# libnuma-dev places buffer-pool pages on the NUMA node of the NIC that moves them, statically too;
# perftest's ib_read_bw is the RDMA plane's baseline (Benchmarks/rdma.sh);
# iputils-ping shows the AF_XDP plane's XDP program leaves other traffic alone (its system test);
# rsyslog is the syslog server the log-forwarding test sends to (started by the test, not as a service);
# openssl makes a node's self-signed HTTPS certificate (boot/tls-cert.sh; the HTTPS tests check it with s_client);
# prometheus scrapes a local cluster's /metrics in the metrics test (started by the test; the package's
# own service is not started here: there is no init system to run it, and the test wants its own);
# python3-zeep is the generated SOAP client the WSDL test calls services through (/usr/bin/python3's);
# chromium, chromium-driver and python3-selenium are the real browser the console's test drives.
packages=(curl file iproute2 nftables procps wrk qemu-system-x86 ipxe-qemu linux-image-amd64 cpio zstd libibverbs-dev libnl-3-dev libnl-route-3-dev libssl-dev
          libpci-dev pciutils libnuma-dev libsqlite3-dev perftest iputils-ping rsyslog prometheus openssl python3-zeep
          chromium chromium-driver python3-selenium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v swift >/dev/null 2>&1; then
  if [ -x /opt/swift/usr/bin/swift ]; then
    echo "install-deps: swift is at /opt/swift/usr/bin; the Makefile puts it on PATH"
  else
    echo "install-deps: Swift 6.1 or later is needed (swift not on PATH, nor at /opt/swift)" >&2
    exit 1
  fi
fi
