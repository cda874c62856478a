#!/usr/bin/env bash
# Boot-speed benchmark: kcore create -> running / guest-ready vs bare QEMU with the same
# argv, in the same run. Usage: scripts/bench.sh [--runs N] [--accel tcg|kvm] [--machine q35|microvm]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-test-guest.sh >/dev/null
cargo build --release --locked -p kcored -p kcore-bench
exec target/release/kcore-bench "$@"
