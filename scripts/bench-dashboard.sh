#!/usr/bin/env bash
# Dashboard benchmark: how long kcore-dashboard takes to serve its pages (the VM list
# above all) with 1,000 VMs in the store, through a real kcored all-in-one.
# Usage: scripts/bench-dashboard.sh [--vms N] [--calls N]  (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-test-guest.sh >/dev/null
cargo build --release --locked -p kcored -p kcore-dashboard -p kcore-bench
target/release/kcore-bench-dashboard "$@"
