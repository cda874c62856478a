#!/usr/bin/env bash
# kcored's memory: RSS of an all-in-one daemon idle, with 1 and N small VMs running (the test
# guest, direct kernel boot, 128 MiB, TCG), and idle again once the N VMs are deleted, from
# /proc/PID/status (VmRSS, RssAnon, RssFile) and /proc/PID/smaps_rollup (Pss). Only kcored
# is measured: QEMU's memory is the guests'. (scripts/bench-startup.sh reads the daemons'
# VmRSS itself, with the same settling time.)
#
# Usage: scripts/bench-rss.sh [--vms N] [--settle SECS] [--bin DIR] [--no-build] [--json]
#   --settle S  seconds between the last request and a sample (default 5; kcored releases
#               its executable's clean pages 3 s after its last request or VM change)
#   --bin DIR   take kcored and kctl from DIR (default: target/release, built first)
#   --json      print one JSON object instead of the table
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

vms=10 settle=5 bin=target/release build=1 json=0 ready_timeout=600
while [ $# -gt 0 ]; do
    case "$1" in
        --vms) vms=$2; shift 2 ;;
        --settle) settle=$2; shift 2 ;;
        --bin) bin=$2; build=0; shift 2 ;;
        --no-build) build=0; shift ;;
        --json) json=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "bench-rss: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
case "$vms" in ''|*[!0-9]*) echo "bench-rss: --vms takes a number" >&2; exit 2 ;; esac

if [ "$build" = 1 ]; then
    cargo build --release --locked -p kcored -p kctl >&2
fi
kcored=$bin/kcored kctl=$bin/kctl
for b in "$kcored" "$kctl"; do
    [ -x "$b" ] || { echo "bench-rss: $b is not built" >&2; exit 1; }
done
guest=${KCORE_GUEST_DIR:-/var/cache/kcore/test-guest}
bash scripts/build-test-guest.sh --offline "$guest" >/dev/null

work=$(mktemp -d /tmp/kcore-bench-rss.XXXXXX)
pid=
cleanup() {
    set +e
    if [ -n "$pid" ]; then
        for n in $(KCORE_SOCKET=$work/run/kcore.sock "$kctl" -o json vm list 2>/dev/null |
            grep -o '"name": *"rss-[0-9]*"' | grep -o 'rss-[0-9]*'); do
            KCORE_SOCKET=$work/run/kcore.sock "$kctl" vm delete "$n" --force >/dev/null 2>&1
        done
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/data" "$work/run"
"$kcored" all-in-one --data-dir "$work/data" --run-dir "$work/run" --accel tcg \
    --cpu-overcommit 16 \
    >"$work/kcored.log" 2>&1 &
pid=$!
export KCORE_SOCKET=$work/run/kcore.sock
for _ in $(seq 100); do
    "$kctl" vm list >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/kcored.log" >&2; exit 1; }
    sleep 0.1
done

# kB of a /proc/PID/status or smaps_rollup field.
field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/$1"; }
sample() {
    sleep "$settle"
    echo "$(field status VmRSS) $(field status RssAnon) $(field status RssFile) $(field smaps_rollup Pss) $(field status Threads)"
}

create() {
    "$kctl" vm create "rss-$1" --vcpu 1 --memory 128 --kernel "$guest/vmlinuz" \
        --initrd "$guest/initrd.img" --cmdline "console=ttyS0 quiet panic=-1" \
        --ready-pattern KCORE-GUEST-READY >/dev/null
}
# Wait until guests 1..$1 are ready (their console output is what the daemon keeps per VM).
wait_ready() {
    local deadline=$((SECONDS + ready_timeout)) n i
    while :; do
        n=0
        for i in $(seq 1 "$1"); do
            "$kctl" -o json vm timeline "rss-$i" | grep -q guest_ready && n=$((n + 1))
        done
        [ "$n" -ge "$1" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "bench-rss: only $n of $1 guests ready after ${ready_timeout}s" >&2
            exit 1
        fi
        sleep 1
    done
}

read -r idle_rss idle_anon idle_file idle_pss idle_thr < <(sample)
one_rss=$idle_rss one_anon=$idle_anon one_file=$idle_file one_pss=$idle_pss one_thr=$idle_thr
vms_rss=$idle_rss vms_anon=$idle_anon vms_file=$idle_file vms_pss=$idle_pss vms_thr=$idle_thr
after_rss=$idle_rss after_anon=$idle_anon after_file=$idle_file after_pss=$idle_pss
after_thr=$idle_thr
per_vm=0
if [ "$vms" -ge 1 ]; then
    # The first VM also maps the daemon's start path (code shared by every VM): the cost
    # of one more VM is measured from the first to the last.
    create 1
    wait_ready 1
    read -r one_rss one_anon one_file one_pss one_thr < <(sample)
    for i in $(seq 2 "$vms"); do create "$i"; done
    wait_ready "$vms"
    read -r vms_rss vms_anon vms_file vms_pss vms_thr < <(sample)
    [ "$vms" -ge 2 ] && per_vm=$(( (vms_rss - one_rss) / (vms - 1) ))
    # Idle again: the VMs stopped and deleted (the same path as the cleanup's).
    for i in $(seq 1 "$vms"); do "$kctl" vm delete "rss-$i" --force >/dev/null; done
    read -r after_rss after_anon after_file after_pss after_thr < <(sample)
fi

if [ "$json" = 1 ]; then
    printf '{"idle_kib":{"rss":%s,"anon":%s,"file":%s,"pss":%s,"threads":%s},' \
        "$idle_rss" "$idle_anon" "$idle_file" "$idle_pss" "$idle_thr"
    printf '"one_vm_kib":{"rss":%s,"anon":%s,"file":%s,"pss":%s,"threads":%s},' \
        "$one_rss" "$one_anon" "$one_file" "$one_pss" "$one_thr"
    printf '"vms":%s,"with_vms_kib":{"rss":%s,"anon":%s,"file":%s,"pss":%s,"threads":%s},' \
        "$vms" "$vms_rss" "$vms_anon" "$vms_file" "$vms_pss" "$vms_thr"
    printf '"after_kib":{"rss":%s,"anon":%s,"file":%s,"pss":%s,"threads":%s},' \
        "$after_rss" "$after_anon" "$after_file" "$after_pss" "$after_thr"
    printf '"per_vm_kib":%s}\n' "$per_vm"
else
    printf '%-22s %9s %9s %9s %9s %8s\n' "kcored all-in-one" "RSS KiB" "anon KiB" "file KiB" "PSS KiB" threads
    printf '%-22s %9s %9s %9s %9s %8s\n' idle "$idle_rss" "$idle_anon" "$idle_file" "$idle_pss" "$idle_thr"
    if [ "$vms" -ge 1 ]; then
        printf '%-22s %9s %9s %9s %9s %8s\n' "with 1 VM" "$one_rss" "$one_anon" "$one_file" "$one_pss" "$one_thr"
        printf '%-22s %9s %9s %9s %9s %8s\n' "with $vms VMs" "$vms_rss" "$vms_anon" "$vms_file" "$vms_pss" "$vms_thr"
        printf '%-22s %9s %9s %9s %9s %8s\n' "idle, $vms VMs deleted" "$after_rss" "$after_anon" "$after_file" "$after_pss" "$after_thr"
        printf '%-22s %9s   (RSS from 1 to %s VMs, per VM)\n' "per VM" "$per_vm" "$vms"
    fi
fi
