#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document: schemathesis, every check, on `tsr serve` over a
# demo home. Both run in a network namespace of their own that has only loopback, so no download
# the generated requests start can reach any other machine (they fail at once, as offline).
#   scripts/api-check.sh [TSR_BINARY] [SCHEMATHESIS_ARGS…]     (default .build/debug/tsr)
# Run as root (ip netns). Exits non-zero on any schemathesis failure.
set -euo pipefail
cd "$(dirname "$0")/.."
tsr="${1:-.build/debug/tsr}"
[ $# -gt 0 ] && shift
[ -x "$tsr" ] || { echo "api-check.sh: no tsr binary at $tsr (swift build first)" >&2; exit 1; }
command -v ip >/dev/null || { echo "api-check.sh: ip (iproute2) not found; scripts/install-deps.sh installs it" >&2; exit 1; }
# schemathesis in a virtualenv of its own under .build (Debian's Python refuses pip installs).
version="4.32.5"
venv=.build/api-check-venv
if ! "$venv/bin/python" -m schemathesis.cli --version 2>/dev/null | grep -q "$version"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$version"
fi
st=("$(cd "$venv" && pwd)/bin/python" -m schemathesis.cli)
work="$(mktemp -d)"
ns="tsr-api-$$"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
"$tsr" demo --home "$work/home" > /dev/null
# No keys in the server's environment: nothing secret can appear in what it answers.
ip netns exec "$ns" env -u HF_TOKEN -u CIVITAI_API_KEY -u TSR_API_TOKEN \
  "$tsr" serve --listen 127.0.0.1:0 --home "$work/home" > "$work/serve.log" 2>&1 &
server=$!
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$work/serve.log" | head -1)"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log"; echo "api-check.sh: tsr serve did not start" >&2; exit 1; }
# A fixed seed keeps CI repeatable; pass --seed N (or none) to explore.
status=0
ip netns exec "$ns" timeout --kill-after=10 900 "${st[@]}" run "http://127.0.0.1:$port/openapi.json" \
  --checks all --max-examples 60 --seed 1 --no-color "$@" > "$work/schemathesis.log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  cat "$work/schemathesis.log"
  echo "api-check.sh: schemathesis found failures (above)" >&2
  exit 1
fi
grep -E "generated|passed|Seed" "$work/schemathesis.log" | sed 's/^ */schemathesis: /'
