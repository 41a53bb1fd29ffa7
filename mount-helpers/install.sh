#!/bin/sh
# Installs tensors for mount(8), fstab and systemd (run as root):
#   mount-helpers/install.sh [TSR_BINARY] [PREFIX]
# - TSR_BINARY (default: .build/release/tsr, else .build/debug/tsr) is copied to PREFIX/bin/tsr
#   (PREFIX default /usr/local);
# - /sbin/mount.fuse.tsr, with that path filled in, so `mount -t fuse.tsr` and fstab work;
# - tsr-mount@.service into /etc/systemd/system and tsr-mount.service into
#   /etc/systemd/user (every user's `systemctl --user`), with that path filled in.
# - docs/DEPLOYMENT.md into PREFIX/share/doc/tensors (the units' Documentation=).
# Set DESTDIR to install into a staging root (packaging, tests). SBINDIR, UNITDIR and USERUNITDIR
# move the helper and the units (scripts/package.sh: /usr/sbin and /usr/lib/systemd/{system,user}).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-}"
if [ -z "$binary" ]; then
  for candidate in "$here/../.build/release/tsr" "$here/../.build/debug/tsr"; do
    [ -x "$candidate" ] && { binary="$candidate"; break; }
  done
fi
[ -n "$binary" ] && [ -x "$binary" ] || { echo "install.sh: no tsr binary (build it with 'swift build -c release')" >&2; exit 1; }
prefix="${2:-/usr/local}"
root="${DESTDIR:-}"
sbindir="${SBINDIR:-/sbin}"
unitdir="${UNITDIR:-/etc/systemd/system}"
userunitdir="${USERUNITDIR:-/etc/systemd/user}"
tsr="$prefix/bin/tsr"
docdir="$prefix/share/doc/tensors"
install -D -m 0755 "$binary" "$root$tsr"
mkdir -p "$root$sbindir" "$root$unitdir" "$root$userunitdir"
sed "s|@TSR@|$tsr|g" "$here/mount.fuse.tsr" > "$root$sbindir/mount.fuse.tsr"
chmod 0755 "$root$sbindir/mount.fuse.tsr"
for unit in tsr-mount@.service tsr-mount.service; do
  target="$root$unitdir/$unit"
  [ "$unit" = tsr-mount.service ] && target="$root$userunitdir/$unit"
  sed -e "s|@TSR@|$tsr|g" -e "s|@DOC@|$docdir|g" "$here/systemd/$unit" > "$target"
  chmod 0644 "$target"
done
[ -f "$here/../docs/DEPLOYMENT.md" ] && install -D -m 0644 "$here/../docs/DEPLOYMENT.md" "$root$docdir/DEPLOYMENT.md"
echo "installed $tsr, $sbindir/mount.fuse.tsr and the systemd units under ${root:-/}"
