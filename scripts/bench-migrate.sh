#!/usr/bin/env bash
# Live-migration benchmark: a controller and two joined nodes on loopback (mTLS, TCG), one
# guest (1 vCPU, 128 MiB, a root disk cloned from a 64 MiB ext4 image, a 1 GiB data disk)
# migrated back and forth N times with `kctl vm migrate`; per run the guest's pause
# (downtime: source paused -> destination running) and the whole migration (request ->
# completed). Baseline, same run, same VM: what a drain did before migration, a forced
# stop and a start until the guest is ready again (the guest's outage).
# Usage: scripts/bench-migrate.sh [--runs N] [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
runs=5
profile=debug
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --release) profile=release; shift ;;
    *) echo "usage: $0 [--runs N] [--release]" >&2; exit 2 ;;
    esac
done
bash scripts/build-test-guest.sh >/dev/null
guest="${KCORE_GUEST_DIR:-/var/cache/kcore/test-guest}"
if [ "$profile" = release ]; then
    cargo build --release --locked -p kcored -p kctl
else
    CARGO_PROFILE_DEV_DEBUG=line-tables-only cargo build --locked -p kcored -p kctl
fi
bin="$PWD/target/$profile"
t=$(mktemp -d /tmp/kcore-bench-migrate.XXXXXX)
chmod 755 "$t"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for f in "$t"/n*/run/vms/*/qemu.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$t"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_sock() { for _ in $(seq 300); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "no $1" >&2; exit 1; }
kctl() { KCORE_ENDPOINT="unix://$t/c/run/kcore.sock" "$bin/kctl" "$@"; }

cport=$(free_port)
"$bin/kcored" controller --data-dir "$t/c/data" --run-dir "$t/c/run" \
    --listen "127.0.0.1:$cport" --heartbeat-interval 0.5 >"$t/c.log" 2>&1 &
pids+=($!)
wait_sock "$t/c/run/kcore.sock"
mkdir -p "$t/img"
truncate -s 64M "$t/img/root.raw"
mkfs.ext4 -q -F "$t/img/root.raw"
for n in n1 n2; do
    # QEMU (its own uid) reads the migration's TLS files under <run-dir>: the run dir's
    # parents must be searchable, as /run is.
    mkdir -p "$t/$n" && chmod 755 "$t/$n"
    token=$(kctl node join-token --ttl 600)
    "$bin/kcored" node --accel tcg --name "$n" --controller "127.0.0.1:$cport" \
        --ca-cert "$t/c/data/pki/ca.crt" --import-dir "$guest" --import-dir "$t/img" \
        --join-token "$token" --data-dir "$t/$n/data" --run-dir "$t/$n/run" \
        --listen "127.0.0.1:$(free_port)" >"$t/$n.log" 2>&1 &
    pids+=($!)
    wait_sock "$t/$n/run/node.sock"
done
for _ in $(seq 100); do
    [ "$(kctl -o json node list | jq '[.nodes[] | select(.state == "NODE_STATE_READY")] | length')" = 2 ] && break
    sleep 0.2
done
for n in n1 n2; do kctl image import rootfs "$t/img/root.raw" --node "$n" >/dev/null; done
kctl vm create bench --node n1 --vcpu 1 --memory 128 --kernel "$guest/vmlinuz" \
    --initrd "$guest/initrd.img" --cmdline "console=ttyS0 quiet panic=-1 kcore.root=/dev/vda" \
    --image rootfs --disk default:1 --ready-pattern KCORE-GUEST-READY >/dev/null
for _ in $(seq 600); do
    kctl vm console bench --tail 200 | grep -q KCORE-GUEST-READY && break
    sleep 0.1
done
now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
: >"$t/down" ; : >"$t/total" ; : >"$t/outage"
to=n2
for i in $(seq "$runs"); do
    if ! out=$(kctl -o json vm migrate bench --to "$to" 2>"$t/migrate.err"); then
        cat "$t/migrate.err" >&2
        tail -n 20 "$t/c.log" "$t/n1.log" "$t/n2.log" >&2
        exit 1
    fi
    echo "$out" | jq -r '.downtime_ms' >>"$t/down"
    echo "$out" | jq -r '.elapsed_ms' >>"$t/total"
    echo "run $i: migrated to $to: downtime $(echo "$out" | jq -r .downtime_ms) ms, total $(echo "$out" | jq -r .elapsed_ms) ms" >&2
    if [ "$to" = n2 ]; then to=n1; else to=n2; fi
done
ready_ms() {
    kctl -o json vm get bench |
        jq -r '[.timeline.phases[]? | select(.name == "guest_ready") | .offset_ms][0] // empty'
}
for i in $(seq "$runs"); do
    start=$(now_ms)
    kctl vm stop bench --force >/dev/null
    stopped=$(( $(now_ms) - start ))
    kctl vm start bench >/dev/null
    # The new start's timeline: its guest_ready offset from the start request.
    r=""
    for _ in $(seq 600); do r=$(ready_ms); [ -n "$r" ] && break; sleep 0.05; done
    [ -n "$r" ] || { echo "the guest did not get ready" >&2; exit 1; }
    awk -v a="$stopped" -v b="$r" 'BEGIN {printf "%d\n", a + b}' >>"$t/outage"
    echo "run $i: stop + start until ready $(tail -1 "$t/outage") ms" >&2
done
d=$(median <"$t/down"); tt=$(median <"$t/total"); o=$(median <"$t/outage")
echo
echo "| median of $runs runs | ms |"
echo "|---|---:|"
echo "| migration downtime (source paused -> destination running) | $d |"
echo "| migration total (request -> completed) | $tt |"
echo "| baseline: forced stop + start until guest ready | $o |"
echo "| downtime / baseline outage | $(awk -v a="$d" -v b="$o" 'BEGIN {printf "%.3f", a/b}') |"
echo "| migration total / baseline outage | $(awk -v a="$tt" -v b="$o" 'BEGIN {printf "%.2f", a/b}') |"
