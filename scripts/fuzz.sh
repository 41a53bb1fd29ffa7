#!/usr/bin/env bash
# Fuzzes tensors' parsers with libFuzzer for a bounded time:
#   scripts/fuzz.sh [SECONDS] [safetensors|workflows|all]     (default: 60 s, all)
# Each target's new interesting inputs land in fuzz/corpus/<target> (commit the useful ones); a
# crash is written to fuzz/crashes/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
which="${2:-all}"
swift build --product TSRFuzz --build-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING
mkdir -p fuzz/crashes
for target in safetensors workflows; do
  [ "$which" = all ] || [ "$which" = "$target" ] || continue
  mkdir -p "fuzz/corpus/$target"
  max_len=4096
  [ "$target" = workflows ] && max_len=16384
  TSR_FUZZ_TARGET="$target" .build-fuzz/debug/TSRFuzz "fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len="$max_len" -artifact_prefix="fuzz/crashes/$target-" -print_final_stats=1
done
