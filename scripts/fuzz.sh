#!/usr/bin/env bash
# Fuzzes tensors' parsers with libFuzzer for a bounded time:
#   scripts/fuzz.sh [SECONDS] [safetensors|workflows|all]     (default: 60 s, all)
# Each target's new interesting inputs land in fuzz/corpus/<target> (commit the useful ones), or
# in $TSR_FUZZ_CORPUS/<target> when set (the test script fuzzes a copy); a crash is written to
# fuzz/crashes/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
which="${2:-all}"
# Exit status 3 when the fuzzer cannot be built (a missing toolchain piece), so callers tell
# that from a crash found by fuzzing (status 1).
if ! swift build --product TSRFuzz --build-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING; then
  echo "fuzz: building the fuzzer failed (see above): nothing was fuzzed" >&2
  exit 3
fi
mkdir -p fuzz/crashes
for target in safetensors workflows; do
  [ "$which" = all ] || [ "$which" = "$target" ] || continue
  corpus="${TSR_FUZZ_CORPUS:-fuzz/corpus}/$target"
  mkdir -p "$corpus"
  max_len=4096
  [ "$target" = workflows ] && max_len=16384
  TSR_FUZZ_TARGET="$target" .build-fuzz/debug/TSRFuzz "$corpus" \
    -max_total_time="$seconds" -max_len="$max_len" -artifact_prefix="fuzz/crashes/$target-" -print_final_stats=1
done
