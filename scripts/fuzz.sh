#!/usr/bin/env bash
# Fuzzes every decoder of outside input (docs/reliability.md): builds Fuzz/ with libFuzzer and the
# address sanitizer, then runs each target for FUZZ_SECONDS (default 60) starting from its seed
# corpus in Fuzz/corpus/TARGET and its dictionary in Fuzz/dict. Any crash, sanitizer report, hang
# (over 10 s on one input) or allocation over 256 MiB fails the run; the input that did it is kept
# in Fuzz/findings/ with the command that replays it. `make fuzz` runs this; .ci/run runs it with
# FUZZ_SECONDS=5. FUZZ_TARGETS narrows the list; FUZZ_RUNS=N runs each target for N inputs instead
# of a time (the campaign: FUZZ_RUNS=10000000); FUZZ_KEEP=DIR keeps each target's grown corpus in
# DIR/TARGET; FUZZ_CONFIG=release builds optimized (several times the executions per second, for
# the campaign; debug, the default, builds sooner); --seeds rewrites Fuzz/corpus from the encoders.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
# A Swift trap is reported by libFuzzer as a deadly signal; Swift's own backtracer would get in
# the sanitizer's way.
export SWIFT_BACKTRACE=enable=no
targets=${FUZZ_TARGETS:-"xml soap manifest cmdline infoset message frames hello swim directory rdma xdp datagram dhcp netlink modules mtom http"}
seconds=${FUZZ_SECONDS:-60}
if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); span="$FUZZ_RUNS runs"
else limit=(-max_total_time="$seconds"); span="${seconds} s"; fi

echo "fuzz: building Fuzz/ with -sanitize=fuzzer,address"
config=${FUZZ_CONFIG:-debug}
swift build --package-path Fuzz -c "$config" -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing 2>&1 | grep -E "error|warning: unre|Compiling decos_fuzz|Build complete" || true
bin=Fuzz/.build/$config/decos-fuzz
[ -x "$bin" ] || { echo "fuzz: the build failed" >&2; exit 1; }
if [ "${1:-}" = "--seeds" ]; then (cd Fuzz && DECOS_FUZZ_SEEDS=corpus "./.build/$config/decos-fuzz"); echo "fuzz: seeds written to Fuzz/corpus"; exit 0; fi

mkdir -p Fuzz/findings
passed=0 failed=0
for t in $targets; do
  work=$(mktemp -d)
  cp -r "Fuzz/corpus/$t/." "$work/" 2>/dev/null || true
  dict=()
  [ -f "Fuzz/dict/$t.dict" ] && dict=(-dict="Fuzz/dict/$t.dict")
  log=$(mktemp)
  started=$(date +%s)
  if DECOS_FUZZ_TARGET=$t "$bin" "$work" "${dict[@]}" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
       -malloc_limit_mb=256 -artifact_prefix="Fuzz/findings/$t-" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    took=$(( $(date +%s) - started ))
    echo "fuzz: $t: $runs inputs in $took s ($span asked), no crash (corpus $(ls "$work" | wc -l) inputs, coverage $cov edges)"
    if [ -n "${FUZZ_KEEP:-}" ]; then mkdir -p "$FUZZ_KEEP/$t"; cp -r "$work/." "$FUZZ_KEEP/$t/"; fi
    passed=$((passed + 1))
  else
    echo "fuzz: $t: FAILED — libFuzzer's report:" >&2
    grep -E "ERROR|SUMMARY|Fatal error|Test unit written|malloc\(|==[0-9]+==" "$log" | head -20 >&2
    echo "fuzz: replay with: DECOS_FUZZ_TARGET=$t $bin Fuzz/findings/$t-<file>" >&2
    failed=$((failed + 1))
  fi
  rm -rf "$work" "$log"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
