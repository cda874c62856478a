#!/usr/bin/env bash
# Control-plane benchmark: ListVMs latency with 1,000 VMs in the store (baseline: 10 VMs,
# same daemon, same run) and the time until a dead or hung node is marked NotReady and
# READY again (baseline: the configured node timeout / the node's own startup).
# Usage: scripts/bench-cluster.sh [--only all|list|nodes] [--vms N] [--calls N] [--runs N]
#        [--timing HEARTBEAT:TIMEOUT ...]   (see target/release/kcore-bench-cluster --help)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/build-test-guest.sh >/dev/null
cargo build --release --locked -p kcored -p kctl -p kcore-bench
target/release/kcore-bench-cluster "$@"
