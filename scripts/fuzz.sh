#!/usr/bin/env bash
# Fuzzes the safetensors header reader with libFuzzer for a bounded time (default 60 s).
# New interesting inputs land in fuzz/corpus/safetensors (commit the useful ones); a crash is
# written to fuzz/crashes/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
swift build --product SafetensorsFuzz --build-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING
mkdir -p fuzz/crashes
.build-fuzz/debug/SafetensorsFuzz fuzz/corpus/safetensors \
  -max_total_time="$seconds" -max_len=4096 -artifact_prefix=fuzz/crashes/ -print_final_stats=1
