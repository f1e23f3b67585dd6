#!/usr/bin/env bash
# A partition healed, on real processes (docs/reliability.md): three nodes on a LAN of network
# namespaces (Benchmarks/lan.sh); node 2 is cut off from the others (nftables drops everything
# between them) for PARTITION seconds, then the cut is lifted. Prints how long each side took to
# drop the other's services, and how long after the heal every node listed every service again.
# Usage: sudo PARTITION=30 RUNS=3 Benchmarks/partition.sh   (needs root, iproute2, nftables, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
partition=${PARTITION:-30} runs=${RUNS:-3}
source Benchmarks/lan.sh
lists() {  # lists NODE J: node NODE's directory has node J's counter
  ip netns exec "${hosts[$1]}" curl -s --max-time 2 http://127.0.0.1:7480/directory | grep -q "<Uri>decos://n$2/counter</Uri>"
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
for run in $(seq "$runs"); do
  t0=$(date +%s%N)
  ip netns exec "${hosts[2]}" nft add rule inet decos in iifname eth0 drop
  for i in 0 1; do ip netns exec "${hosts[$i]}" nft add rule inet decos in iifname eth0 ip saddr 10.79.0.3 drop; done
  split=""
  while [ $(( $(ms "$t0") / 1000 )) -lt "$partition" ]; do
    if [ -z "$split" ] && ! lists 0 2 && ! lists 2 0; then split=$(ms "$t0"); fi
    sleep 0.2
  done
  for ns in "${hosts[@]}"; do ip netns exec "$ns" nft flush chain inet decos in; done
  t1=$(date +%s%N)
  for _ in $(seq 600); do whole && break; sleep 0.1; done
  whole && back="$(ms "$t1") ms" || back="not within 60 s"
  echo "partition: run $run: n2 cut off for ${partition} s; each side had dropped the other after ${split:-never} ms; whole again ${back} after the heal"
done
