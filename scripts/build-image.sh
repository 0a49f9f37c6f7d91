#!/usr/bin/env bash
# Build the local images `loadspec:local` and `loadspec-demo-target:local` without any registry:
# copy an already built loadspec binary, the shared libraries `ldd` lists and the dynamic loader
# into a temporary root filesystem and `docker import` it. No second (static, release) compile.
#
# Usage: scripts/build-image.sh [BINARY]   (or LOADSPEC_BIN=...; default target/debug/loadspec)
#
# Idempotent and fast: the images carry the binary's SHA-256 as a label, and nothing is rebuilt
# when both images already hold this exact binary. Concurrent runs (parallel tests) serialize
# on a lock file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-${LOADSPEC_BIN:-$here/target/debug/loadspec}}"
image="${LOADSPEC_IMAGE:-loadspec:local}"
demo_image="${LOADSPEC_DEMO_IMAGE:-loadspec-demo-target:local}"

if [[ ! -x "$bin" ]]; then
    echo "build-image: no executable at $bin (run 'cargo build' first or pass the binary)" >&2
    exit 1
fi
command -v docker >/dev/null || { echo "build-image: docker is not installed" >&2; exit 1; }

lock="${TMPDIR:-/tmp}/loadspec-build-image.lock"
exec 9>"$lock"
flock 9

sum="$(sha256sum "$bin" | cut -d' ' -f1)"
label_of() { docker image inspect -f '{{ index .Config.Labels "loadspec.binary.sha256" }}' "$1" 2>/dev/null || true; }
if [[ "$(label_of "$image")" == "$sum" && "$(label_of "$demo_image")" == "$sum" ]]; then
    echo "build-image: $image and $demo_image are up to date ($sum)"
    exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

# The binary, then every library it links (ldd prints "name => /path (addr)" or "/path (addr)").
install -D -m 0755 "$bin" "$root/loadspec"
# Debug info is most of a debug build; the image does not need it.
if command -v strip >/dev/null; then strip --strip-debug "$root/loadspec"; fi
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
# A writable /tmp and the name service files a Rust binary may look up.
mkdir -p "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
echo 'root:x:0:0:root:/:/loadspec' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

tarball="$root.tar"
trap 'rm -rf "$root" "$tarball"' EXIT
tar -C "$root" -cf "$tarball" .

import() {
    local tag="$1" entrypoint="$2"
    docker import \
        --change "ENTRYPOINT $entrypoint" \
        --change "LABEL loadspec.binary.sha256=$sum" \
        --change 'ENV RUST_LOG=info' \
        "$tarball" "$tag" >/dev/null
}
import "$image" '["/loadspec"]'
import "$demo_image" '["/loadspec", "demo-target", "--listen", "0.0.0.0:8080"]'
echo "build-image: built $image and $demo_image from $bin ($sum)"
