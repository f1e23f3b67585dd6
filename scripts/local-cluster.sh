#!/usr/bin/env bash
# Three decos nodes as processes on this machine, one cluster: `make local-cluster`.
# Node i gateways on 127.0.0.1:748i and peers on 127.0.0.1:795i; Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DECOS:-.build/release/decos}
n=${N:-3}
dir=$(mktemp -d)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster.key"
pids=()
trap 'kill ${pids[@]} 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
for i in $(seq 1 "$n"); do
  "$bin" run examples/node.xml --node "node$i" --http "127.0.0.1:748$i" --listen "127.0.0.1:795$i" \
    --seed 127.0.0.1:7951 --cluster-key "$dir/cluster.key" 2>"$dir/node$i.log" &
  pids+=($!)
done
sleep 2
echo "local-cluster: $n nodes; logs in $dir. Try:"
echo "  curl http://127.0.0.1:7481/directory          # every node's services"
echo "  $bin ctl update http://127.0.0.1:7481/@node2/counter --body '<Increment><By>1</By></Increment>'"
wait
