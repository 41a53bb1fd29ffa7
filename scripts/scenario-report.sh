#!/usr/bin/env bash
# Sums the fault scenarios' ledger (one JSON line per scenario, Tests/ScenarioTests) into the
# suite's report line; exits 1 if any byte was lost or served wrong.
set -euo pipefail
ledger="${1:-.build/scenarios.ndjson}"
if [ ! -s "$ledger" ]; then
  echo "scenarios: none ran (they need /dev/fuse)"
  exit 0
fi
awk '
  function value(key) { return match($0, "\"" key "\":[0-9]+") ? substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3) + 0 : 0 }
  { runs++; faults += value("faults_injected"); checked += value("bytes_checked"); lost += value("bytes_lost"); wrong += value("wrong_bytes_served") }
  END {
    printf "scenarios: %d run, %d faults injected, %.0f bytes checked, %.0f bytes lost, %.0f wrong bytes served\n", runs, faults, checked, lost, wrong
    exit (lost > 0 || wrong > 0) ? 1 : 0
  }' "$ledger"
