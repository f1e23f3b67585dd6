#!/usr/bin/env bash
# A buffer through the gateway and back (/echo), as MTOM parts against Base64 in the envelope, in
# the same run with the same client (curl), so the ratio is what the binding costs: time for the
# round trip and the node's peak resident memory over it (issue 12).
#
#   Benchmarks/mtom.sh          env: MB=16 (the buffer's size) ROUNDS=5
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
mb=${MB:-16} rounds=${ROUNDS:-5}
swift build -c release --product decos >/dev/null
bin=.build/release/decos
work=$(mktemp -d)
trap '[ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null; rm -rf "$work"' EXIT
# Room for the Base64 envelope (4/3 of the buffer) and for the parts.
sed "s|maxRequestBytes=\"1048576\"|maxRequestBytes=\"$((mb * 2 << 20))\" maxBufferBytes=\"$((mb * 2 << 20))\"|" examples/node.xml > "$work/node.xml"
head -c $((mb << 20)) /dev/urandom > "$work/data.bin"
ns='xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:d="urn:decos:soap" xmlns:xop="http://www.w3.org/2004/08/xop/include"'
printf '<e:Envelope %s><e:Header><a:Action>urn:decos:verb:Submit</a:Action><d:Buffer id="b"><xop:Include href="cid:b@x"/></d:Buffer></e:Header><e:Body><N/></e:Body></e:Envelope>' "$ns" > "$work/xop.xml"
{ printf '<e:Envelope %s><e:Header><a:Action>urn:decos:verb:Submit</a:Action><d:Buffer id="b" length="%d">' "$ns" $((mb << 20))
  base64 -w0 "$work/data.bin"; printf '</d:Buffer></e:Header><e:Body><N/></e:Body></e:Envelope>'; } > "$work/inline.xml"

# A fresh node per way, so each one's peak resident memory is its own.
start() {
  taskset -c 0 $bin run "$work/node.xml" --http 127.0.0.1:0 >"$work/node.log" 2>&1 &
  echo $! > "$work/pid"
  for _ in $(seq 1 200); do grep -q 'http://127.0.0.1:[0-9]*' "$work/node.log" && break; sleep 0.05; done
  url="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/node.log" | head -1)/echo"
}
stop() { kill "$(cat "$work/pid")"; wait "$(cat "$work/pid")" 2>/dev/null || true; rm -f "$work/pid"; }
hwm() { grep VmHWM "/proc/$(cat "$work/pid")/status" | awk '{print int($2 / 1024)}'; }

mtom() {
  taskset -c 1 curl -sS -o "$work/out" -w '%{time_total}' -H 'Accept: multipart/related' \
    -H 'Content-Type: multipart/related; type="application/xop+xml"; start="<root>"; start-info="application/soap+xml"' \
    -F "env=@$work/xop.xml;type=application/xop+xml;headers=\"Content-ID: <root>\"" \
    -F "b=@$work/data.bin;type=application/octet-stream;headers=\"Content-ID: <b@x>\"" "$url"
}
inline() {
  taskset -c 1 curl -sS -o "$work/out" -w '%{time_total}' -H 'Content-Type: application/soap+xml' --data-binary "@$work/inline.xml" "$url"
}
echo "buffer: $mb MiB to /echo and back, $rounds rounds each way"
for way in mtom inline; do
  start
  times=()
  for _ in $(seq 1 "$rounds"); do
    times+=("$($way)")
    [ "$(stat -c %s "$work/out")" -gt $((mb << 20)) ] || { echo "$way: the reply is short" >&2; exit 1; }
  done
  echo "$way: seconds per round trip ${times[*]}; node's peak resident memory $(hwm) MiB"
  stop
done
