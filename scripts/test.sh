#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls this): install what is needed, build,
# check formatting and lints, build the cached test guest, run every test. Run as root:
# the tests start real QEMU guests (TCG) as the kcore-qemu user.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/deps.sh
bash scripts/build-test-guest.sh
cargo fmt --all -- --check
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
