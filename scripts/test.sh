#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls this): install what is needed, build,
# check formatting and lints, build the cached test guest, check the NixOS module and the
# packaging, run every test. Run as root:
# the tests start real QEMU guests (TCG) as the kcore-qemu user.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/deps.sh
bash scripts/build-test-guest.sh
cargo fmt --all -- --check
cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
# The NixOS module, flake and installer (Nix evaluation, a loop-device install), and the
# systemd unit with the quickstart's choice of it: a few seconds together.
bash scripts/check-nix.sh
bash scripts/check-install.sh
bash scripts/check-service.sh
cargo test --workspace --locked
