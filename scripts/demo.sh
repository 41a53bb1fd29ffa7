#!/usr/bin/env bash
# The main job: install, build, import a generated demo models tree into the demo home and show
# `tsr stats` and `tsr list`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product tsr
.build/release/tsr demo "$@"
