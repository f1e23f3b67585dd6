# A LAN of network namespaces for the fault benchmarks (sourced by loss.sh and partition.sh):
# three release-build nodes, each in a namespace with a veth on one bridge and an nftables input
# chain `inet decos in` to drop packets in; node 0 is the seed. Defines `hosts`, `work`, `decos`,
# `whole` (true when every node lists every node's counter) and cleans up on exit.
export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product decos >/dev/null
decos=$PWD/.build/release/decos
tag=$$ work=$(mktemp -d)
lan=decos-bl-$tag
hosts=(decos-b0-$tag decos-b1-$tag decos-b2-$tag)
cleanup() {
  pkill -f "$work/node" 2>/dev/null || true
  for ns in "${hosts[@]}" "$lan"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$work/key"
ip netns add "$lan"
ip -n "$lan" link add br0 type bridge && ip -n "$lan" link set br0 up
for i in 0 1 2; do
  ns=${hosts[$i]}
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name p$i netns "$lan"
  ip -n "$lan" link set p$i master br0 up
  ip -n "$ns" addr add 10.79.0.$((i + 1))/24 dev eth0
  ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up
  ip netns exec "$ns" nft add table inet decos
  ip netns exec "$ns" nft 'add chain inet decos in { type filter hook input priority 0 ; }'
  seed=""; [ $i -gt 0 ] && seed='<Seed address="10.79.0.1:7946"/>'
  cat >"$work/node$i.xml" <<XML
<Manifest xmlns="urn:decos:manifest">
  <Network><Cluster listen="10.79.0.$((i + 1)):7946" keyFile="$work/key">$seed</Cluster></Network>
  <Service contract="urn:decos:examples:counter" name="/counter"/>
</Manifest>
XML
  ip netns exec "$ns" "$decos" run "$work/node$i.xml" --node n$i --http 127.0.0.1:7480 >"$work/n$i.log" 2>&1 &
done
whole() {
  for i in 0 1 2; do
    page=$(ip netns exec "${hosts[$i]}" curl -s --max-time 5 http://127.0.0.1:7480/directory || true)
    for j in 0 1 2; do grep -q "<Uri>decos://n$j/counter</Uri>" <<<"$page" || return 1; done
  done
}
for _ in $(seq 300); do whole && break; sleep 0.2; done
whole || { echo "$(basename "$0" .sh): the cluster did not form" >&2; exit 1; }
