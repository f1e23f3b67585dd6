#!/usr/bin/env bash
# Subscriptions across a healed partition, on real processes (docs/reliability.md): three
# release-build nodes a, b and c on a LAN of network namespaces (a bridge, a veth per node; a is
# the seed). On c, `decos ctl subscribe` follows a's counter and b's counter through c's gateway
# (/@a/counter, /@b/counter), each line it prints stamped with the time it came. c is cut off
# from a and b (nftables drops everything in and out of c's LAN link, TCP and UDP) for PARTITION
# seconds; then the cut is lifted and a's and b's counters are each updated every 200 ms
# (`decos ctl update` in their namespaces, at most 60 s). Prints, for each subscription, the
# seconds from the heal until c's subscriber printed a notification again, and whether it printed
# a gap line ("gap: …", then "state now:") after the cut. The baseline, measured before the cut:
# the seconds from starting one `decos ctl update` to its notification at c (process start
# included). MISSED=N makes N updates on a and b during the cut as well (notifications c cannot
# get: a gap must be reported).
#
#   Benchmarks/partition-subscriptions.sh     env: PARTITION=30 RUNS=2 MISSED=0
#   (needs root, iproute2, nftables, curl; runs call after call on the same three nodes)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
partition=${PARTITION:-30} runs=${RUNS:-2} missed=${MISSED:-0}
swift build -c release --product decos >/dev/null
decos=$PWD/.build/release/decos
tag=$$ work=$(mktemp -d)
lan=decos-sl-$tag
names=(a b c)
hosts=(decos-sa-$tag decos-sb-$tag decos-sc-$tag)
pids=()
source Benchmarks/stop.sh
cleanup() {
  [ ${#pids[@]} -gt 0 ] && stop "${pids[@]}"
  for ns in "${hosts[@]}" "$lan"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
in_ns() { local i=$1; shift; ip netns exec "${hosts[$i]}" "$@"; }
# (Processes kept in $pids are started with `ip netns exec` itself, not in_ns: run in the background,
# a function is a subshell, and killing it would leave the node or subscriber running.)

head -c 32 /dev/urandom | base64 >"$work/key"
ip netns add "$lan"
ip -n "$lan" link add br0 type bridge && ip -n "$lan" link set br0 up
for i in 0 1 2; do
  ns=${hosts[$i]}
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name p$i netns "$lan"
  ip -n "$lan" link set p$i master br0 up
  ip -n "$ns" addr add 10.77.0.$((i + 1))/24 dev eth0
  ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up
  in_ns $i nft add table inet decos
  in_ns $i nft 'add chain inet decos in { type filter hook input priority 0 ; }'
  in_ns $i nft 'add chain inet decos out { type filter hook output priority 0 ; }'
  seed=""; [ $i -gt 0 ] && seed='<Seed address="10.77.0.1:7946"/>'
  cat >"$work/${names[$i]}.xml" <<XML
<Manifest xmlns="urn:decos:manifest">
  <Network><Cluster listen="10.77.0.$((i + 1)):7946" keyFile="$work/key">$seed</Cluster></Network>
  <Service contract="urn:decos:examples:counter" name="/counter"/>
</Manifest>
XML
  ip netns exec "$ns" "$decos" run "$work/${names[$i]}.xml" --node "${names[$i]}" --http 127.0.0.1:7480 >"$work/${names[$i]}.log" 2>&1 &
  pids+=($!)
done
whole() {
  for i in 0 1 2; do
    page=$(in_ns $i curl -s --max-time 5 http://127.0.0.1:7480/directory || true)
    for n in "${names[@]}"; do grep -q "<Uri>decos://$n/counter</Uri>" <<<"$page" || return 1; done
  done
}
for _ in $(seq 300); do whole && break; sleep 0.2; done
whole || { echo "partition-subscriptions: the cluster did not form" >&2; exit 1; }

# Each line a subscriber prints, with the time it came ($EPOCHREALTIME), in $work/sub-NAME.
stamp() { while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done; }
for i in 0 1; do
  n=${names[$i]}
  ip netns exec "${hosts[2]}" "$decos" ctl subscribe "http://127.0.0.1:7480/@$n/counter" > >(stamp >"$work/sub-$n") 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do grep -q "subscribed to" "$work/sub-a" 2>/dev/null && grep -q "subscribed to" "$work/sub-b" 2>/dev/null && break; sleep 0.1; done
for n in a b; do grep -q "subscribed to" "$work/sub-$n" || { echo "partition-subscriptions: c could not subscribe to $n" >&2; cat "$work/sub-$n" >&2; exit 1; }; done

update() { in_ns "$1" timeout 10 "$decos" ctl update http://127.0.0.1:7480/counter --body '<Increment><By>1</By></Increment>' >/dev/null 2>&1; }
# Waits for the updates started in the background (the nodes and subscribers are not its children).
wait_updates() { local p; for p in $(jobs -pr); do case " ${pids[*]} " in *" $p "*) ;; *) wait "$p" 2>/dev/null || true ;; esac; done; }
# The first notification of an update ("Update from decos://a/counter:") in a subscriber's file
# after line $2 (not "Subscribe from …", which is how a gap whose envelope decos ctl does not
# recognise as one is printed).
notified_after() { tail -n +"$(($2 + 1))" "$work/sub-$1" | awk '$2 == "Update" && $3 == "from" {print $1; exit}'; }
# The first gap after line $2: its time, and "gap:" (decos ctl reported it) or "<Gap>" (a Gap body
# printed as a plain notification).
gap_after() { tail -n +"$(($2 + 1))" "$work/sub-$1" | awk '$2 == "gap:" || $2 == "<Gap>" {print $1, $2; exit}'; }
lines() { wc -l <"$work/sub-$1"; }
since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }

# Baseline: one update on a and on b, no cut; seconds from starting the update to the notification.
declare -A base=()
for i in 0 1; do
  n=${names[$i]} l=$(lines "${names[$i]}") t0=$EPOCHREALTIME
  update "$i" || true
  for _ in $(seq 100); do [ -n "$(notified_after "$n" "$l")" ] && break; sleep 0.05; done
  t=$(notified_after "$n" "$l")
  [ -n "$t" ] || { echo "partition-subscriptions: c's subscription to $n delivers nothing before the cut" >&2; cat "$work/sub-$n" >&2; exit 1; }
  base[$n]=$(since "$t0" "$t")
done
echo "partition-subscriptions: before the cut, an update on a reaches c's subscriber in ${base[a]} s, on b in ${base[b]} s (decos ctl process start included)"

for run in $(seq "$runs"); do
  declare -A mark=()
  for n in a b; do mark[$n]=$(lines "$n"); done
  in_ns 2 nft add rule inet decos in iifname eth0 drop
  in_ns 2 nft add rule inet decos out oifname eth0 drop
  t_cut=$EPOCHREALTIME
  if [ "$missed" -gt 0 ]; then
    sleep 5
    for _ in $(seq "$missed"); do update 0 || true; update 1 || true; done
  fi
  while [ "$(since "$t_cut" "$EPOCHREALTIME" | cut -d. -f1)" -lt "$partition" ]; do sleep 0.1; done
  in_ns 2 nft flush chain inet decos in
  in_ns 2 nft flush chain inet decos out
  t_heal=$EPOCHREALTIME
  # Updates on a and b every 200 ms until both subscriptions deliver again and every node lists
  # every counter (at most 60 s; each update given 10 s).
  sent=0 whole_at=""
  for _ in $(seq 300); do
    [ -z "$whole_at" ] && whole && whole_at=$EPOCHREALTIME
    [ -n "$whole_at" ] && [ -n "$(notified_after a "${mark[a]}")" ] && [ -n "$(notified_after b "${mark[b]}")" ] && break
    update 0 & update 1 &
    sent=$((sent + 1))
    sleep 0.2
  done
  wait_updates
  [ -n "$whole_at" ] && back="$(since "$t_heal" "$whole_at") s" || back="not within 60 s"
  for n in a b; do
    t=$(notified_after "$n" "${mark[$n]}")
    read -r g how <<<"$(gap_after "$n" "${mark[$n]}")"
    if [ -n "$t" ]; then took="$(since "$t_heal" "$t") s"; else took="NEVER (within 60 s)"; fi
    gap=no; [ -n "$g" ] && gap="yes, $(since "$t_heal" "$g") s after the heal"
    [ "$how" = "<Gap>" ] && gap+=", but printed as a Subscribe notification with a <Gap> body, not as \"gap:\""
    echo "partition-subscriptions: run $run: c cut off for ${partition} s; subscription to $n delivering again ${took} after the heal (gap reported: ${gap})"
  done
  echo "partition-subscriptions: run $run: ${sent} rounds of updates made; every node listed every counter again ${back} after the heal"
done
# a and b never lost each other: each death one declares of the other is a false one.
false_deaths=$(( $(grep -c "member b at .* is dead" "$work/a.log" || true) + $(grep -c "member a at .* is dead" "$work/b.log" || true) ))
echo "partition-subscriptions: deaths declared in the logs: $(cat "$work"/[abc].log | grep -c " is dead " || true), of them between a and b (never cut off from each other): ${false_deaths}; subscriber outputs:"
for n in a b; do echo "--- sub-$n (last 30 lines)"; tail -n 30 "$work/sub-$n"; done
