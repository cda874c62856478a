#!/usr/bin/env bash
# Where the fast profile's boot time comes from: bare QEMU boots of the test guest, the
# variants alternating in every round (q35 + SeaBIOS as libvirt's default, q35 + qboot,
# microvm with the kernel as given, then the PVH image and the fast profile's kernel
# parameters one at a time). No daemon: the guest's own boot only. docs/profiles.md.
# Usage: scripts/bench-boot.sh [--rounds N] (target/release/kcore-bench-boot --help)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-test-guest.sh --offline >/dev/null
cargo build --release --locked -p kcore-bench --bin kcore-bench-boot >&2
exec target/release/kcore-bench-boot "$@"
