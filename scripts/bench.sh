#!/usr/bin/env bash
# Boot-speed benchmark: kcore create -> running / guest-ready vs bare QEMU with the same
# argv, in the same run; then the same with a boot disk cloned from an imported image.
# Usage: scripts/bench.sh [--runs N] [--accel tcg|kvm] [--machine q35|microvm]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-test-guest.sh >/dev/null
cargo build --release --locked -p kcored -p kcore-bench
target/release/kcore-bench "$@"

# A small ext4 image to clone boot disks from.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/root"
echo hello >"$work/root/hello.txt"
mkfs.ext4 -q -F -d "$work/root" "$work/root.raw" 256M
qemu-img convert -f raw -O qcow2 "$work/root.raw" "$work/root.qcow2"
target/release/kcore-bench --image "$work/root.qcow2" "$@"
