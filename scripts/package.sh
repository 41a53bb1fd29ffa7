#!/usr/bin/env bash
# Builds tensors_<version>_amd64.deb, a package that needs no Swift on the machine it installs on:
#   scripts/package.sh [OUTPUT_DIR]        (default: .build-package/deb)
# - tsr is a release build with the Swift runtime and Foundation linked statically
#   (--static-swift-stdlib); `tsr --version` names the commit it was built from;
# - it depends only on Debian's libfuse3-3, fuse3, libcurl4, libssl3 and libsqlite3-0 (the build
#   checks that every shared library tsr loads comes from one of them or from libc);
# - it installs /usr/bin/tsr, /usr/sbin/mount.fuse.tsr (mount -t fuse.tsr, fstab), the systemd
#   units (/usr/lib/systemd/{system,user}), bash/zsh/fish completions and man pages generated from
#   tsr's own help (swift-argument-parser's generate-manual plugin).
# Prints the path of the .deb as its last line. scripts/fresh-check.sh installs it on a Debian 12
# without Swift and uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb not found (Debian's dpkg)" >&2; exit 1; }
scratch=.build-package
out="${1:-$scratch/deb}"
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || true)"
[ -n "$commit" ] || { echo "package.sh: not a git checkout; the package must name its commit" >&2; exit 1; }
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-modified"   # say so rather than name a commit the bytes did not come from
fi

echo "building tsr (release, static Swift runtime, commit $commit)…"
swift build -c release --product tsr --static-swift-stdlib --scratch-path "$scratch" \
  -Xcc "-DTSR_BUILD_COMMIT=$commit" 2>&1 | tail -3
binary="$scratch/release/tsr"
version_line="$("$binary" --version)"
version="$(echo "$version_line" | awk '{print $2}')"
case "$version_line" in *"commit $commit"*) ;; *) echo "package.sh: '$version_line' does not name commit $commit" >&2; exit 1 ;; esac

# Depends: the packages of the shared libraries tsr names (ELF NEEDED, found with dpkg -S), which must
# be libc's own or libfuse3/libcurl/libssl/libsqlite3, plus fuse3 for fusermount3.
allowed="libc6 libgcc-s1 libstdc++6 libfuse3-3 libcurl4 libssl3 libsqlite3-0"
owners=()
while read -r soname; do
  lib="$(ldd "$binary" | awk -v n="$soname" '$1 == n {print $3; exit} substr($1, length($1) - length(n)) == "/" n {print $1; exit}')"
  [ -n "$lib" ] || { echo "package.sh: tsr needs $soname, which is not on this machine" >&2; exit 1; }
  # dpkg knows a file by the path its package ships (/lib/… or /usr/lib/… on merged /usr).
  owner=""
  for path in "$(dirname "$lib")/$(basename "$(readlink -f "$lib")")" "$(readlink -f "$lib")" "$lib"; do
    owner="$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1 || true)"
    [ -n "$owner" ] && break
  done
  case " $allowed " in
    *" $owner "*) owners+=("$owner") ;;
    *) echo "package.sh: tsr needs $lib (package '${owner:-none}'), which the .deb does not depend on" >&2; exit 1 ;;
  esac
done < <(objdump -p "$binary" | awk '$1 == "NEEDED" {print $2}')
for needed in libfuse3-3 libcurl4 libssl3 libsqlite3-0; do
  case " ${owners[*]} " in *" $needed "*) ;; *) echo "package.sh: tsr does not load $needed; is this the right binary?" >&2; exit 1 ;; esac
done
depends="$(printf '%s\n' "${owners[@]}" | sort -u | sed 's/^libfuse3-3$/libfuse3-3 (>= 3.14)/' | paste -sd, | sed 's/,/, /g'), fuse3"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/tensors_${version}_amd64"
DESTDIR="$root" SBINDIR=/usr/sbin UNITDIR=/usr/lib/systemd/system USERUNITDIR=/usr/lib/systemd/user \
  mount-helpers/install.sh "$binary" /usr >/dev/null
strip --strip-unneeded "$root/usr/bin/tsr"

# Completions, from tsr itself.
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$binary" --generate-completion-script bash > "$root/usr/share/bash-completion/completions/tsr"
"$binary" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_tsr"
"$binary" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/tsr.fish"

# Man pages: swift-argument-parser's generate-manual plugin, one page per subcommand. It builds
# the package's executables (debug here: the help text is the same code) and writes mdoc pages.
echo "generating man pages…"
swift package --allow-writing-to-package-directory generate-manual --configuration debug \
  --multi-page --date "$(git log -1 --format=%cs)" --authors "tensors maintainers" > "$stage/manual.log" 2>&1 \
  || { cat "$stage/manual.log" >&2; echo "package.sh: generating the man pages failed" >&2; exit 1; }
pages=".build/plugins/GenerateManual/outputs/tsr"
ls "$pages"/*.1 >/dev/null 2>&1 || { cat "$stage/manual.log" >&2; echo "package.sh: no man pages in $pages" >&2; exit 1; }
install -d "$root/usr/share/man/man1"
for page in "$pages"/*.1; do gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"; done

install -D -m 0644 README.md "$root/usr/share/doc/tensors/README.md"
for doc in CLI.md SEMANTICS.md API.md; do
  [ -f "docs/$doc" ] && install -m 0644 "docs/$doc" "$root/usr/share/doc/tensors/$doc"
done

install -d "$root/DEBIAN"
installed_size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<EOF
Package: tensors
Version: $version
Architecture: amd64
Maintainer: tensors maintainers <maintainers@tensors.invalid>
Installed-Size: $installed_size
Depends: $depends
Section: utils
Priority: optional
Description: one copy of every model file, every name it goes by
 tensors (tsr) keeps diffusion models (checkpoints, LoRAs, VAEs ...) once each
 in a content-addressed store, with a SQLite registry of every name ComfyUI and
 other tools know them by, and mounts them (FUSE) as ComfyUI's models folder.
 Built from commit $commit.
EOF
mkdir -p "$out"
deb="$out/tensors_${version}_amd64.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$(du -h "$deb" | cut -f1) $(dpkg-deb -f "$deb" Package Version | tr '\n' ' ')"
echo "$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
