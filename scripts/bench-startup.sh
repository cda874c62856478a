#!/usr/bin/env bash
# Guest start-up side by side, in one run, on the same guest: kcore vs libvirt (virsh
# create of the equivalent domain XML) vs bare QEMU, TCG on all three. Create -> vCPUs
# running and -> guest ready on q35, pc and microvm, stop --force, 10 creates at once,
# daemon RSS (kcored vs libvirtd + virtlogd), the guests' PSS; templates and
# `--profile fast` when this kctl has them. See docs/benchmarks.md.
#
# Installs libvirt from Debian for this benchmark only (the daemon, its QEMU driver and
# virsh; not in deps.sh), starts virtlogd and libvirtd in the foreground (PID 1 here is
# not systemd), gives /dev/kvm to root:kvm 0660 for the run (else libvirt re-probes QEMU
# on every call) and makes the bridge kbench0. A trap undoes all of it however the run
# ends: the bench's libvirt domains, every process that mentions the work dir (kcored,
# QEMUs), libvirtd and virtlogd, the bridge, /dev/kvm's owner and mode, the work dir.
#
# Usage: scripts/bench-startup.sh [--rounds N] [--machines q35,pc,microvm] [--concurrent N]
#        [--concurrent-rounds N] [--memory MiB] [--no-devices]
#        (target/release/kcore-bench-startup --help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
    echo "bench-startup.sh: run it as root (libvirtd, taps, /dev/kvm)" >&2
    exit 1
fi
if pid=$(pidof libvirtd); then
    echo "bench-startup.sh: a libvirtd already runs (pid $pid): the benchmark starts its own" >&2
    exit 1
fi
if ip link show kbench0 >/dev/null 2>&1; then
    echo "bench-startup.sh: a link kbench0 already exists: delete it first" >&2
    exit 1
fi
guest=${KCORE_GUEST_DIR:-/var/cache/kcore/test-guest}
bash scripts/build-test-guest.sh "$guest" >/dev/null
cargo build --release --locked -p kcored -p kctl -p kcore-bench

# libvirt from Debian, here only. libvirt-daemon-system would also pull in systemd as init
# and udev, so: the daemon, its QEMU driver and virsh, plus what that package's postinst
# creates (QEMU runs as libvirt-qemu, a member of kvm).
need=()
for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
    useradd --system --gid libvirt-qemu --groups kvm --home-dir /var/lib/libvirt \
        --no-create-home --shell /usr/sbin/nologin libvirt-qemu

work=$(mktemp -d /var/tmp/kcore-bench-startup.XXXXXX)
# QEMU runs as other users (kcore's per-VM uid, libvirt-qemu): they must reach the guest.
chmod 0755 "$work"
kvm_owner=$(stat -c %u:%g /dev/kvm)
kvm_mode=$(stat -c %a /dev/kvm)
libvirtd_pid=
virtlogd_pid=
bridge=

stop_daemon() { # pid
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null || true
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ -n "$libvirtd_pid" ]; then
        virsh -q -c qemu:///system list --name 2>/dev/null | grep '^kb-' |
            while read -r d; do virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1; done
    fi
    # Anything left that mentions the work dir: kcored, kcore's and bare QEMUs, the bench.
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = $$ ] && continue
        { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$work" && kill -9 "${p#/proc/}" 2>/dev/null
    done
    [ -n "$libvirtd_pid" ] && stop_daemon "$libvirtd_pid"
    [ -n "$virtlogd_pid" ] && stop_daemon "$virtlogd_pid"
    rm -f /var/log/libvirt/qemu/kb-*.log
    [ -n "$bridge" ] && ip link del "$bridge" 2>/dev/null
    chown "$kvm_owner" /dev/kvm
    chmod "$kvm_mode" /dev/kvm
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

chown root:kvm /dev/kvm
chmod 0660 /dev/kvm
ip link add kbench0 type bridge
bridge=kbench0
ip link set kbench0 up

mkdir "$work/guest"
cp "$guest/vmlinuz" "$guest/initrd.img" "$work/guest/"
chmod 0755 "$work/guest"
chmod 0644 "$work/guest/"*

virtlogd >"$work/virtlogd.log" 2>&1 &
virtlogd_pid=$!
libvirtd >"$work/libvirtd.log" 2>&1 &
libvirtd_pid=$!
for _ in $(seq 300); do
    [ -S /run/libvirt/libvirt-sock ] && break
    kill -0 "$libvirtd_pid" 2>/dev/null || { cat "$work/libvirtd.log" >&2; exit 1; }
    sleep 0.1
done
# The first call fills libvirtd's QEMU capabilities cache (seconds); not measured.
virsh -q -c qemu:///system version >/dev/null

# In the background, so that a TERM or INT reaches the trap at once (bash runs traps only
# between commands, and `wait` is one it interrupts).
target/release/kcore-bench-startup --work "$work" \
    --kernel "$work/guest/vmlinuz" --initrd "$work/guest/initrd.img" --bridge kbench0 \
    --libvirtd-pid "$libvirtd_pid" --virtlogd-pid "$virtlogd_pid" "$@" &
wait $!
