#!/usr/bin/env bash
# Remote calls: Decos against grpc-swift-2, in one run on one machine state. Builds the gRPC side
# (Benchmarks/GRPCComparison, ~7 minutes the first time), runs `decos-bench remote calls` (which
# also measures the raw SwiftNIO echo floor) and `remote buffers` (against raw TCP streams), then
# the gRPC unary benchmark, and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product decos-bench
swift build -c release --package-path Benchmarks/GRPCComparison
# Calls and buffers in processes of their own: each starts from a fresh heap.
decos=$(taskset -c 0 .build/release/decos-bench remote calls | tee /dev/stderr)
taskset -c 0 .build/release/decos-bench remote buffers
grpc=$(taskset -c 0 Benchmarks/GRPCComparison/.build/release/GRPCComparison | tee /dev/stderr)
d50=$(echo "$decos" | grep '^remote' | sed 's/.*p50 \([0-9]*\).*/\1/')
drate=$(echo "$decos" | grep '^remote' | sed 's/.*; \(.*\) with.*/\1/')
g50=$(echo "$grpc" | sed 's/.*p50 \([0-9]*\).*/\1/')
grate=$(echo "$grpc" | grep -o '[0-9]* calls/s' | grep -o '[0-9]*')
echo "ratio     Decos p50 ${d50} µs vs gRPC ${g50} µs: $(awk -v a="$g50" -v b="$d50" 'BEGIN { printf "%.1f", a / b }')x faster; Decos ${drate} vs gRPC ${grate}/s with 64 in flight"
