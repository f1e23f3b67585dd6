#!/usr/bin/env bash
# Membership and calls under packet loss, on real processes (docs/reliability.md): three nodes on a
# LAN of network namespaces (a bridge, a veth per node), LOSS% of every node's input dropped at
# random by nftables for DURATION seconds while node 0's gateway calls node 1's counter (Update,
# one at a time, through `decos ctl`). Then the loss ends and the script waits for the cluster to
# be whole. Prints the calls' outcomes and latency, the deaths declared (every one is false: no node
# stops), and how long after the loss every node listed every other's services again.
# Usage: sudo LOSS=10 DURATION=300 Benchmarks/loss.sh   (needs root, iproute2, nftables, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
loss=${LOSS:-10} duration=${DURATION:-300}
source Benchmarks/lan.sh
deaths_before=$(cat "$work"/n*.log | grep -c " is dead " || true)
for ns in "${hosts[@]}"; do ip netns exec "$ns" nft add rule inet decos in iifname eth0 numgen random mod 100 \< "$loss" drop; done
echo "loss: ${loss}% of every node's input dropped for ${duration} s; calls n0 -> n1 meanwhile"
: >"$work/calls"
end=$((SECONDS + duration))
while [ $SECONDS -lt $end ]; do
  t0=$(date +%s%N)
  if ip netns exec "${hosts[0]}" "$decos" ctl update http://127.0.0.1:7480/@n1/counter --body '<Increment><By>1</By></Increment>' >/dev/null 2>&1; then r=ok; else r=fault; fi
  echo "$r $(( ($(date +%s%N) - t0) / 1000 ))" >>"$work/calls"
done
for ns in "${hosts[@]}"; do ip netns exec "$ns" nft flush chain inet decos in; done
healed=$SECONDS
for _ in $(seq 600); do whole && break; sleep 0.1; done
whole && back=$((SECONDS - healed)) || back="not within 60"
deaths=$(( $(cat "$work"/n*.log | grep -c " is dead " || true) - deaths_before ))
value=$(ip netns exec "${hosts[1]}" curl -s http://127.0.0.1:7480/counter | sed -n 's/.*<Value>\([0-9]*\)<\/Value>.*/\1/p')
ok=$(grep -c '^ok' "$work/calls" || true) fault=$(grep -c '^fault' "$work/calls" || true)
p() { grep '^ok' "$work/calls" | awk '{print $2}' | sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(NR*q); if (i<1) i=1; printf "%.1f", a[i]/1000}'; }
echo "loss: calls $((ok + fault)): $ok replies, $fault faults ($(awk -v a="$ok" -v b="$((ok + fault))" 'BEGIN { printf "%.2f", 100 * a / b }')% succeeded); counter $value (one increment per reply: $([ "$value" = "$ok" ] && echo yes || echo NO))"
echo "loss: reply latency through decos ctl (process start included): p50 $(p 0.5) ms, p99 $(p 0.99) ms"
echo "loss: deaths declared during the run (all false): $deaths; whole again ${back} s after the loss ended"
