#!/usr/bin/env bash
# The main job: install, build, import a generated demo models tree into the demo home, show
# `tsr stats` and `tsr list`, then mount the demo home, show what ComfyUI would see, and unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product tsr
tsr=.build/release/tsr
$tsr demo "$@"
home="${TSR_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/tensors-demo}"
mnt="$(mktemp -d /tmp/tensors-demo-mount-XXXXXX)"
cleanup() { $tsr umount "$mnt" >/dev/null 2>&1 || fusermount3 -uz "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true; }
trap cleanup EXIT
echo
echo "\$ tsr mount $mnt"
$tsr mount "$mnt" --home "$home"
echo "\$ ls $mnt/loras $mnt/by-base"
ls "$mnt/loras" "$mnt/by-base"
echo "\$ ls -l $mnt/by-base/Pony/loras/pony"
ls -l "$mnt/by-base/Pony/loras/pony"
echo "\$ tsr status"
$tsr status
