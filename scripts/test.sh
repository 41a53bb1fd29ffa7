#!/usr/bin/env bash
# The whole test suite from nothing: system packages, build, unit + integration tests (real FUSE
# mounts where /dev/fuse exists), the fuzz corpus replay and bounded fuzzing, then the numbered
# fault scenarios, ending with their report line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Our own code builds without a warning (dependencies' warnings are theirs). A fresh clone rebuilds
# everything, so CI sees every warning; an incremental build shows only recompiled files'.
build_log="$(mktemp)"
swift build --build-tests 2>&1 | tee "$build_log"
if grep -E "^$PWD/(Sources|Tests|bench)/.*: warning:" "$build_log" | sort -u | tee /dev/stderr | grep -q .; then
  echo "the build has warnings in our own code (above); fix them"; exit 1
fi
rm -f "$build_log"
# Never leave a mount behind, whatever happens: a stuck FUSE mount would block the next run.
# A mount whose daemon is stuck in the kernel cannot be killed; aborting its FUSE connection
# (fusectl) fails every request in flight and frees it.
cleanup_mounts() {
  awk '/ - fuse\.tsr / {print $3, $5}' /proc/self/mountinfo 2>/dev/null | while read -r dev m; do
    case "$m" in
      /tmp/*)
        [ -d /sys/fs/fuse/connections/"${dev#*:}" ] || mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
        echo 1 > /sys/fs/fuse/connections/"${dev#*:}"/abort 2>/dev/null || true
        fusermount3 -uz "$m" 2>/dev/null || true ;;
    esac
  done
}
trap cleanup_mounts EXIT
# A hung test must fail the run, not hold it until CI's own limit.
timeout --kill-after=30 1800 swift test --skip-build --skip ScenarioTests 2>&1 | tee .build/test.log
# The HTTP API against its own OpenAPI document (schemathesis, every check; no network beyond
# loopback): what the document promises, the server does.
scripts/api-check.sh .build/debug/tsr
# The committed fuzz corpora must still parse without a crash (a regression check, not fuzzing).
swift run -c debug TSRFuzz safetensors fuzz/corpus/safetensors
swift run -c debug TSRFuzz workflows fuzz/corpus/workflows
# Bounded fuzzing of the same parsers (libFuzzer + AddressSanitizer, 20 s each) on a copy of the
# corpora, so a run never changes the committed ones; a crash fails the run.
fuzz_copy="$(mktemp -d)"
cp -r fuzz/corpus/. "$fuzz_copy"/
fuzz_status=0
TSR_FUZZ_CORPUS="$fuzz_copy" scripts/fuzz.sh 20 all > .build/fuzz.log 2>&1 || fuzz_status=$?
grep -E "^stat::number_of_executed_units" .build/fuzz.log | sed 's/^/fuzzing: /' || true
if [ "$fuzz_status" -eq 3 ]; then tail -40 .build/fuzz.log; echo "fuzzing could not start: building the fuzzer failed (see above; scripts/install-deps.sh installs what it needs)"; exit 1; fi
if [ "$fuzz_status" -ne 0 ]; then tail -40 .build/fuzz.log; echo "fuzzing failed (a crash is in fuzz/crashes/)"; exit 1; fi
rm -rf "$fuzz_copy"
# The numbered fault scenarios (docs/SCENARIOS.md) on their own, so that the soak's load cannot
# disturb the timing checks of other tests; they end with one report line.
rm -f .build/scenarios.ndjson
timeout --kill-after=30 900 swift test --skip-build --filter ScenarioTests --skip SoakScenario 2>&1 | tee .build/scenarios.log
# The soak alone, last: its 32 workers would make the others' "within 2 s" checks race it.
timeout --kill-after=30 600 swift test --skip-build --filter SoakScenario 2>&1 | tee -a .build/scenarios.log
scripts/scenario-report.sh .build/scenarios.ndjson
