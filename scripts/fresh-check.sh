#!/usr/bin/env bash
# A fresh machine, checked for real: builds minimal Debian 12 systems with debootstrap and
#  1. in one that has only the Swift toolchain (this machine's, bound read-only at the same path)
#     and the Swift package mirror this machine's git uses, runs the README's two commands on a
#     clean clone of this repository, exactly as the README writes them;
#  2. in one with no Swift at all, installs the .deb from scripts/package.sh with apt and uses it:
#     tsr --version, tsr demo, a mount, a lazy read of a model served over HTTP, tsr doctor.
#   scripts/fresh-check.sh [--deb FILE] [--only swift|deb]
# Run as root. Every mount and process it starts inside those systems is undone on exit, whatever
# happens; logs go to .build/fresh/. TSR_DEBIAN_MIRROR picks another Debian mirror.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
deb=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb="$(readlink -f "$2")"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "usage: scripts/fresh-check.sh [--deb FILE] [--only swift|deb]" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-check.sh: run as root (debootstrap, chroot, mounts)" >&2; exit 1; }
mirror="${TSR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
swift_bin="$(command -v swift || true)"
[ -n "$swift_bin" ] || { echo "fresh-check.sh: swift is not on PATH" >&2; exit 1; }
toolchain="$(dirname "$(dirname "$(dirname "$(readlink -f "$swift_bin")")")")"   # …/usr/bin/swift → …
logs="$repo/.build/fresh"
mkdir -p "$logs"
command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
work="$(mktemp -d "${TSR_FRESH_DIR:-/var/tmp}/tsr-fresh.XXXXXX")"
server_pid=""

# Undo everything: kill what runs inside the systems, abort their FUSE connections (a stuck daemon
# must not hold an unmount), unmount deepest first, and delete the systems only when nothing is
# mounted under them any more.
cleanup() {
  local status=$?
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  local pass p dev m
  for pass in 1 2 3; do
    for p in /proc/[0-9]*; do
      case "$(readlink "$p/root" 2>/dev/null)" in "$work"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
    done
    awk -v w="$work/" 'index($5, w) == 1 && / - fuse(\.[^ ]*)? / {print $3}' /proc/self/mountinfo | while read -r dev; do
      [ -d /sys/fs/fuse/connections/"${dev#*:}" ] || mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
      [ -e /sys/fs/fuse/connections/"${dev#*:}"/abort ] && { echo 1 > /sys/fs/fuse/connections/"${dev#*:}"/abort; } 2>/dev/null || true
    done
    awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
    awk -v w="$work/" 'index($5, w) == 1' /proc/self/mountinfo | grep -q . || break
    sleep 1
  done
  if awk -v w="$work/" 'index($5, w) == 1' /proc/self/mountinfo | grep -q .; then
    echo "fresh-check.sh: mounts remain under $work; left in place" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

step() { echo "== fresh-check: $* ($(date -u +%H:%M:%S))"; }

# Runs a command as root inside system $1 with a clean environment (nothing of this shell's leaks
# in: no TSR_HOME, no token); $2 is PATH's prefix ("" or the toolchain), the rest is the command.
run_in() {
  local root="$1" prefix="$2"; shift 2
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH="${prefix:+$prefix:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    /bin/bash -c "$*"
}

# A minimal Debian 12 (debootstrap's minbase), made once and copied for each system. Apt reaches
# Debian the way this machine does (its Acquire settings); resolv.conf and hosts are this machine's.
step "debootstrap Debian 12 (minbase)"
debootstrap --variant=minbase bookworm "$work/base" "$mirror" > "$logs/debootstrap.log" 2>&1 \
  || { tail -20 "$logs/debootstrap.log"; echo "fresh-check.sh: debootstrap failed" >&2; exit 1; }
cat > "$work/base/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
for f in /etc/apt/apt.conf.d/*; do grep -qs '^Acquire::' "$f" && cp "$f" "$work/base/etc/apt/apt.conf.d/"; done
cp /etc/resolv.conf /etc/hosts "$work/base/etc/"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$work/base/etc/"
# This machine's own certificate authorities (an egress proxy's, say) are part of how it reaches
# its registries over https (PyPI for the API check): the systems trust them too once Debian's
# ca-certificates is installed (it adds /usr/local/share/ca-certificates).
if ls /usr/local/share/ca-certificates/*.crt > /dev/null 2>&1; then
  mkdir -p "$work/base/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$work/base/usr/local/share/ca-certificates/"
fi

# The kernel's interfaces a system needs: / as a mount point, /proc, /sys (fusectl included) and
# /dev (/dev/fuse, loop devices for the btrfs test, /dev/shm for Chromium).
enter() {
  local root="$1"
  # Its root a mount point of its own, as a machine's is: `ip netns exec` (the API check)
  # remounts / as a slave and fails on a plain directory.
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"
  mount --rbind /dev "$root/dev"; mount --make-rslave "$root/dev"
}

bind_ro() {
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mount -o remount,bind,ro "$2"
}

check_swift_system() {
  local root="$work/swift"
  step "system with Swift only: copying the base system"
  cp -a "$work/base" "$root"
  enter "$root"
  bind_ro "$toolchain" "$root$toolchain"
  # The Swift package mirror: the url.*.insteadOf rules of this machine's git that point at a
  # local folder, and that folder, read-only.
  local rules key value target
  rules="$(git config --get-regexp '^url\..*\.insteadof$' 2>/dev/null || true)"
  while read -r key value; do
    [ -n "$key" ] || continue
    target="${key#url.}"; target="${target%.insteadof}"
    if [ -d "$target" ]; then
      mountpoint -q "$root$target" 2>/dev/null || bind_ro "$target" "$root$target"
      git config --file "$root/etc/gitconfig" --add "url.$target.insteadOf" "$value"
    fi
  done <<< "$rules"
  git clone -q "$repo" "$root/root/tensors"
  chmod 700 "$root/root"
  # The README's two commands, exactly as written: the first fenced sh block, comments aside.
  mapfile -t commands < <(awk '/^```sh/{inside=1; next} /^```/{if (inside) exit} inside && !/^#/ && NF' "$root/root/tensors/README.md")
  [ "${#commands[@]}" -eq 2 ] || { echo "fresh-check.sh: README's first sh block has ${#commands[@]} commands, not 2" >&2; exit 1; }
  local n=0 command
  for command in "${commands[@]}"; do
    n=$((n + 1))
    step "system with Swift only: README command $n: $command"
    if ! timeout --kill-after=30 3600 chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH="$toolchain/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        /bin/bash -c "cd /root/tensors && $command" > "$logs/readme-$n.log" 2>&1; then
      tail -60 "$logs/readme-$n.log"
      echo "fresh-check.sh: README command $n ($command) failed on a fresh Debian 12 (log: $logs/readme-$n.log)" >&2
      exit 1
    fi
    grep -E "^(scenarios:|Test run with|fuzzing:)" "$logs/readme-$n.log" | tail -4 || true
  done
}

check_deb_system() {
  local root="$work/plain"
  if [ -z "$deb" ]; then
    step "building the .deb (scripts/package.sh)"
    deb="$("$repo/scripts/package.sh" | tail -1)"
  fi
  [ -f "$deb" ] || { echo "fresh-check.sh: no .deb at '$deb'" >&2; exit 1; }
  step "system without Swift: installing $(basename "$deb") with apt"
  cp -a "$work/base" "$root"
  enter "$root"
  cp "$deb" "$root/tmp/"
  run_in "$root" "" "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/$(basename "$deb")" \
    > "$logs/deb-install.log" 2>&1 || { tail -30 "$logs/deb-install.log"; echo "fresh-check.sh: apt could not install the .deb" >&2; exit 1; }
  run_in "$root" "" '! command -v swift && ! ls /usr/lib/swift /usr/share/swift >/dev/null 2>&1' \
    || { echo "fresh-check.sh: the system meant to have no Swift has some" >&2; exit 1; }

  # A model for the lazy read, served by this machine over HTTP on loopback (the systems share
  # its network): 3 MiB of random bytes behind a small safetensors header.
  local models="$work/served"
  mkdir -p "$models"
  python3 - "$models/lazy.safetensors" <<'EOF'
import json, os, struct, sys
header = json.dumps({"w": {"dtype": "U8", "shape": [3 << 20], "data_offsets": [0, 3 << 20]}}).encode()
header += b" " * (-len(header) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + os.urandom(3 << 20))
EOF
  local sha
  sha="$(sha256sum "$models/lazy.safetensors" | cut -d' ' -f1)"
  python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$models" > "$work/server.log" 2>&1 &
  server_pid=$!
  local port="" i
  for i in $(seq 1 50); do
    port="$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$work/server.log" | head -1)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "fresh-check.sh: the HTTP server did not start" >&2; exit 1; }

  step "system without Swift: tsr --version, demo, mount, lazy read, doctor"
  local expect_commit=""
  expect_commit="$(git -C "$repo" rev-parse --short=12 HEAD)"
  run_in "$root" "" "set -euo pipefail
    tsr --version | grep 'commit $expect_commit'
    test -f /usr/share/man/man1/tsr.1.gz
    test -x /usr/sbin/mount.fuse.tsr
    tsr demo | tail -3
    tsr add http://127.0.0.1:$port/lazy.safetensors --folder loras --sha256 $sha
    tsr list --folder loras | grep lazy.safetensors | grep -q remote
    mkdir -p /mnt/models
    tsr mount /mnt/models
    trap 'tsr umount /mnt/models || fusermount3 -uz /mnt/models' EXIT
    ls /mnt/models/loras
    test \"\$(sha256sum < /mnt/models/loras/lazy.safetensors | cut -d' ' -f1)\" = $sha
    tsr list --folder loras | grep lazy.safetensors | grep present
    tsr doctor
  " > "$logs/deb-use.log" 2>&1 || { tail -40 "$logs/deb-use.log"; echo "fresh-check.sh: the installed package did not work (log: $logs/deb-use.log)" >&2; exit 1; }
  grep -E "^tsr [0-9]" "$logs/deb-use.log" || true
  kill "$server_pid" 2>/dev/null || true
  server_pid=""
  step "the .deb works on Debian 12 without Swift"
}

case "$only" in
  "") check_deb_system; check_swift_system ;;
  deb) check_deb_system ;;
  swift) check_swift_system ;;
  *) echo "fresh-check.sh: --only swift or --only deb" >&2; exit 64 ;;
esac
step "done: the README's commands work on a fresh Debian 12${only:+ ($only only)}"
