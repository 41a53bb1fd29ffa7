#!/usr/bin/env bash
# Installs the Debian packages tensors needs to build, run and test. Run as root (or with sudo).
# Swift itself (6.x) is expected on PATH; see README.md.
set -euo pipefail
packages=(
  # What Swift itself needs to run and build on Debian 12 (swift.org's list for a toolchain
  # unpacked by hand); the fuzzer's runtime links libstdc++.
  binutils git gnupg2 libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev libncurses6 libpython3-dev
  libsqlite3-0 libstdc++-12-dev libxml2-dev libz3-dev pkg-config tzdata unzip zlib1g-dev ca-certificates
  libfuse3-dev fuse3            # the mount (libfuse3 low-level API, fusermount3)
  libsqlite3-dev                # GRDB uses the system SQLite (FTS5 included)
  libssl-dev openssl            # SHA-256 through OpenSSL EVP; openssl dgst is the bench baseline
  libcurl4-openssl-dev          # the fetch engine
  curl                          # the download benchmark's baseline (bench/FetchBench)
  pkg-config
  util-linux bsdutils           # mount/umount, setpriv and script(1) for tests (tmpfs, loop devices, a TTY)
  procps                        # pgrep: tests find the mount daemon's process
  python3 python3-venv          # bench/*.py, the tests' YAML and browser helpers, schemathesis's venv
  iproute2                      # scripts/api-check.sh runs the API in a network namespace (ip netns)
  btrfs-progs                   # a loop-mounted btrfs in the tests exercises reflink copies
  systemd                       # systemd-analyze verify checks the units in mount-helpers/
  python3-yaml                  # tests load extra_model_paths.yaml the way ComfyUI does (yaml.safe_load)
  chromium chromium-driver python3-selenium  # the web page is tested in headless Chromium (Tests/Web)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
