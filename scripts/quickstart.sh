#!/usr/bin/env bash
# kcore's main job on one host, from nothing: install what is needed, build kcored and kctl,
# start an all-in-one daemon, and boot a real VM through kctl, then show its console and
# where its boot time went. Run as root on Debian/Ubuntu. The daemon keeps running
# afterwards; use kctl to drive it. Where systemd is the init system, kcored runs as the
# service kcored (dist/systemd/kcored.service; logs: journalctl -u kcored); elsewhere with
# nohup (log: /var/log/kcored.log).
#
# Environment: KCORE_ACCEL=auto|kvm|tcg (default auto: KVM when usable; if the guest does
# not come up under KVM, e.g. broken nested KVM, the daemon is restarted with TCG).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '\n== %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/kcored-service.sh
. scripts/lib/kcored-service.sh

accel=${KCORE_ACCEL:-auto}
data=/var/lib/kcore
run=/run/kcore
images=$data/images

log "installing dependencies"
bash scripts/deps.sh

log "building kcored and kctl (release)"
cargo build --release --locked -p kcored -p kctl
install -m 0755 target/release/kcored target/release/kctl /usr/local/bin/

log "building the demo guest (Debian cloud kernel + busybox initramfs) into $images"
bash scripts/build-test-guest.sh "$images/demo-guest"

manager=$(kcored_service_manager /)
if [ "$manager" = systemd ]; then
    daemon_log="journalctl -u kcored"
else
    daemon_log="/var/log/kcored.log"
fi

wait_daemon() {
    for _ in $(seq 100); do [ -S "$run/kcore.sock" ] && kctl node list >/dev/null 2>&1 && return; sleep 0.1; done
    echo "kcored did not start; see $daemon_log" >&2
    exit 1
}

start_daemon() {
    if [ "$manager" = systemd ]; then
        # A kcored an earlier quickstart started with nohup would hold the directories.
        if ! systemctl -q is-active kcored && pgrep -x kcored >/dev/null; then
            log "stopping the kcored started without systemd (VMs keep running)"
            pkill -x kcored || true
            for _ in $(seq 50); do pgrep -x kcored >/dev/null || break; sleep 0.1; done
        fi
        log "starting kcored all-in-one as the systemd service kcored (--accel $1)"
        kcored_install_unit "" "$PWD" "$1"
        systemctl daemon-reload
        systemctl enable -q kcored
        # A restart signals kcored alone (KillMode=process): VMs keep running.
        systemctl restart kcored
        wait_daemon
        return
    fi
    if [ -S "$run/kcore.sock" ] && pgrep -x kcored >/dev/null; then
        log "stopping the running kcored (VMs keep running)"
        pkill -x kcored || true
        for _ in $(seq 50); do pgrep -x kcored >/dev/null || break; sleep 0.1; done
    fi
    log "starting kcored all-in-one (--accel $1)"
    # The log names VMs and their command lines: root's alone.
    touch /var/log/kcored.log && chmod 0600 /var/log/kcored.log
    nohup /usr/local/bin/kcored all-in-one --data-dir "$data" --run-dir "$run" --accel "$1" \
        >>/var/log/kcored.log 2>&1 &
    wait_daemon
}

boot_demo() {
    kctl vm delete demo --force >/dev/null 2>&1 || true
    log "kctl vm create demo"
    kctl vm create demo --vcpu 1 --memory 256 \
        --kernel "$images/demo-guest/vmlinuz" --initrd "$images/demo-guest/initrd.img" \
        --cmdline "console=ttyS0 quiet panic=-1 kcore.marker=hello-from-kcore" \
        --ready-pattern KCORE-GUEST-READY || return 1
    for _ in $(seq 300); do
        kctl -o json vm get demo 2>/dev/null | grep -q '"guest_ready"' && return 0
        sleep 0.1
    done
    return 1
}

start_daemon "$accel"
if ! boot_demo; then
    if [ "$accel" = auto ] && kctl -o json node list | grep -q '"accel": "kvm"'; then
        log "the guest did not come up under KVM within 30 s (nested KVM broken?): retrying with TCG"
        kctl vm delete demo --force || true
        start_daemon tcg
        boot_demo || { echo "the demo guest did not boot; see kctl vm console demo --tail 50" >&2; exit 1; }
    else
        echo "the demo guest did not boot; see kctl vm console demo --tail 50" >&2
        exit 1
    fi
fi

log "kctl vm list"
kctl vm list
log "kctl vm console demo --tail 8"
kctl vm console demo --tail 8
echo
log "kctl vm timeline demo"
kctl vm timeline demo
log "done: kcored runs (log: $daemon_log); try: kctl vm console demo (Ctrl-] detaches), kctl vm stop demo"
