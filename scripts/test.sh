#!/usr/bin/env bash
# The whole test suite from nothing: system packages, build, unit + integration tests (real FUSE
# mounts where /dev/fuse exists), the fuzz corpus replay.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
# Never leave a mount behind, whatever happens: a stuck FUSE mount would block the next run.
cleanup_mounts() {
  awk '/ - fuse\.tsr / {print $5}' /proc/self/mountinfo 2>/dev/null | while read -r m; do
    case "$m" in /tmp/*) fusermount3 -uz "$m" 2>/dev/null || true ;; esac
  done
}
trap cleanup_mounts EXIT
# A hung test must fail the run, not hold it until CI's own limit.
timeout --kill-after=30 1800 swift test --skip-build --skip ScenarioTests 2>&1 | tee .build/test.log
# The committed fuzz corpora must still parse without a crash (a regression check, not fuzzing).
swift run -c debug TSRFuzz safetensors fuzz/corpus/safetensors
swift run -c debug TSRFuzz workflows fuzz/corpus/workflows
# The numbered fault scenarios (docs/SCENARIOS.md) on their own, so that the soak's load cannot
# disturb the timing checks of other tests; they end with one report line.
rm -f .build/scenarios.ndjson
timeout --kill-after=30 1200 swift test --skip-build --filter ScenarioTests 2>&1 | tee .build/scenarios.log
scripts/scenario-report.sh .build/scenarios.ndjson
