#!/usr/bin/env bash
# The whole test suite from nothing: system packages, build, unit + integration tests, fuzz corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test.log
# The committed fuzz corpus must still parse without a crash (a regression check, not fuzzing).
swift run -c debug SafetensorsFuzz fuzz/corpus/safetensors
