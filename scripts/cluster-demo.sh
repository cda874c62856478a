#!/usr/bin/env bash
# A three-node kcore cluster on one machine: a controller on 127.0.0.1:9090 and three node
# daemons (n1, n2, n3) on 127.0.0.1:9091-9093 that join it with one-time tokens, each with
# its own data and run dirs under $KCORE_DEMO_DIR (default /tmp/kcore-cluster). Then a
# "remote" user gets their own admin certificate and drives the cluster over mutual TLS
# with kctl: three VMs, spread over the three nodes.
#
# Run as root after scripts/quickstart.sh (or anything that installed kcored, kctl, QEMU
# and the kcore-qemu user). `bash scripts/cluster-demo.sh stop` stops the demo's daemons
# and VMs and removes its directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/bin"
base=${KCORE_DEMO_DIR:-/tmp/kcore-cluster}
log() { printf '\n== %s\n' "$*" >&2; }

stop() {
    # Daemons first (VMs would be restarted otherwise), then the QEMUs they left running.
    pkill -f -- "--data-dir $base/" 2>/dev/null || true
    sleep 0.5
    for pid in $(cat "$base"/n*/run/vms/*/qemu.pid 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    rm -rf "$base"
}
if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

command -v kcored >/dev/null && command -v kctl >/dev/null || {
    echo "kcored and kctl are not installed: run scripts/quickstart.sh first" >&2
    exit 1
}
stop
for port in 9090 9091 9092 9093; do
    if ss -Hltn "sport = :$port" | grep -q .; then
        echo "port 127.0.0.1:$port is in use (by: $(ss -Hltnp "sport = :$port" | sed 's/.*users://')); free it first" >&2
        exit 1
    fi
done
mkdir -p "$base"
chmod 0755 "$base"
bash scripts/build-test-guest.sh >/dev/null
guest=${KCORE_GUEST_DIR:-/var/cache/kcore/test-guest}

log "controller on 127.0.0.1:9090"
kcored controller --listen 127.0.0.1:9090 --data-dir "$base/ctl" --run-dir "$base/ctl/run" \
    >>"$base/ctl.log" 2>&1 &
for _ in $(seq 100); do [ -S "$base/ctl/run/kcore.sock" ] && break; sleep 0.1; done
pki=$base/ctl/pki
admin() {
    KCORE_CA_CERT=$pki/ca.crt KCORE_CLIENT_CERT=$pki/admin.crt KCORE_CLIENT_KEY=$pki/admin.key \
        kctl --endpoint https://127.0.0.1:9090 "$@"
}

# --import-dir: the files TLS clients may name on the node (here the guest's kernel).
for i in 1 2 3; do
    log "node n$i on 127.0.0.1:909$i (joins with a one-time token)"
    token=$(admin node join-token)
    kcored node --name "n$i" --controller 127.0.0.1:9090 --join-token "$token" \
        --ca-cert "$pki/ca.crt" --listen "127.0.0.1:909$i" --import-dir "$guest" \
        --data-dir "$base/n$i" --run-dir "$base/n$i/run" >>"$base/n$i.log" 2>&1 &
done
for _ in $(seq 300); do
    [ "$(admin node list | grep -c READY)" = 3 ] && break
    sleep 0.1
done
admin node list

log "a remote user with their own certificate: kctl cert issue ops --role admin"
admin cert issue ops --role admin --out "$base/ops/kcore"
cat >"$base/ops/kcore/config.toml" <<EOF
endpoint = "https://127.0.0.1:9090"
ca_cert = "ca.crt"
client_cert = "ops.crt"
client_key = "ops.key"
EOF
export XDG_CONFIG_HOME=$base/ops KCORE_ENDPOINT=https://127.0.0.1:9090
cat "$base/ops/kcore/config.toml"

log "three VMs, placed by the scheduler"
for vm in web1 web2 web3; do
    kctl vm create "$vm" --vcpu 1 --memory 128 \
        --kernel "$guest/vmlinuz" --initrd "$guest/initrd.img" \
        --cmdline "console=ttyS0 quiet panic=-1" --ready-pattern KCORE-GUEST-READY >/dev/null
done
kctl vm list
kctl node list
cat >&2 <<EOF

The cluster keeps running. Drive it as the "ops" user:
    export XDG_CONFIG_HOME=$base/ops KCORE_ENDPOINT=https://127.0.0.1:9090
    kctl vm list ; kctl node get n2 ; kctl node drain n3
Logs: $base/*.log. Stop it all: bash scripts/cluster-demo.sh stop
EOF
