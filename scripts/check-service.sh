#!/usr/bin/env bash
# The systemd unit for hosts that are not NixOS (dist/systemd/kcored.service) and the
# quickstart's choice between it and nohup:
#   1. systemd-analyze verify accepts the unit (any warning fails the check);
#   2. the settings that keep guests alive across a daemon restart are there, and every
#      kcored flag in ExecStart exists in `kcored all-in-one --help`;
#   3. the quickstart picks systemd only where PID 1 is systemd (tried on made-up roots and
#      on this machine), and installs the unit and /etc/default/kcored where it should.
# Needs: systemd (for systemd-analyze), shellcheck, a built kcored (target/debug; built
# here if missing). Takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
repo=$PWD
unit=dist/systemd/kcored.service
log() { printf 'check-service: %s\n' "$*" >&2; }
fail() {
    printf 'check-service: FAIL: %s\n' "$*" >&2
    exit 1
}
command -v systemd-analyze >/dev/null ||
    fail "systemd-analyze not found: apt-get install systemd (bash scripts/deps.sh does)"
command -v shellcheck >/dev/null ||
    fail "shellcheck not found: apt-get install shellcheck (bash scripts/deps.sh does)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

kcored=${KCORED:-target/debug/kcored}
if [ ! -x "$kcored" ]; then
    log "building kcored (cargo build -p kcored)"
    cargo build -q --locked -p kcored
fi

# The value of KEY in the unit's [SECTION] (the last one, as systemd reads it).
unit_get() {
    awk -v sect="[$2]" -v key="$3" '
        /^[[:space:]]*(#|;|$)/ { next }
        /^\[/ { in_sect = ($0 == sect); next }
        in_sect { i = index($0, "="); if (substr($0, 1, i - 1) == key) v = substr($0, i + 1) }
        END { print v }' "$1"
}

# 1. systemd's own parser, on a copy whose ExecStart is the kcored built here.
sed "s|^ExecStart=/usr/local/bin/kcored |ExecStart=$repo/$kcored |" "$unit" >"$tmp/kcored.service"
grep -q "^ExecStart=$repo/$kcored all-in-one" "$tmp/kcored.service" || fail "$unit: ExecStart is not /usr/local/bin/kcored all-in-one ..."
out=$(systemd-analyze verify --man=no "$tmp/kcored.service" 2>&1) || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit warns: $out"
log "ok: systemd-analyze verify $unit ($(systemd-analyze --version | head -n 1))"

# 2. What the unit must say.
expect() {
    local got
    got=$(unit_get "$unit" "$1" "$2")
    [ "$got" = "$3" ] || fail "$unit: [$1] $2 is '$got', expected '$3' ($4)"
}
expect Service KillMode process "a stop or restart signals kcored alone: guests keep running"
expect Service OOMPolicy continue "a guest killed by the OOM killer does not stop the unit"
expect Service RuntimeDirectory kcore "/run/kcore: the guests' sockets and pidfiles"
expect Service RuntimeDirectoryPreserve yes "/run/kcore survives a stop; a reboot empties it"
expect Service RuntimeDirectoryMode 0711 "docs/security.md"
expect Service StateDirectory kcore "/var/lib/kcore"
expect Service StateDirectoryMode 0711 "docs/security.md"
expect Service UMask 0077 "kcored's files are root's alone"
expect Service Restart on-failure "restarted after a crash"
expect Service TasksMax infinity "the guests' threads count against the unit"
expect Install WantedBy multi-user.target "started at boot"
for forbidden in ExecStop KillSignal Delegate; do
    [ -z "$(unit_get "$unit" Service "$forbidden")" ] || fail "$unit: $forbidden= must not be set"
done
exec_line=$(unit_get "$unit" Service ExecStart)
help=$("$kcored" all-in-one --help)
while IFS= read -r flag; do
    grep -qE -- "^ +$flag " <<<"$help" || fail "$unit: kcored all-in-one has no $flag"
done < <(grep -oE -- '--[a-z][a-z-]*' <<<"$exec_line")
# shellcheck disable=SC2016 # systemd's variables, literally
for want in "--data-dir /var/lib/kcore" "--run-dir /run/kcore" '--accel ${KCORE_ACCEL}' '$KCORED_ARGS'; do
    grep -qF -- "$want" <<<"$exec_line" || fail "$unit: ExecStart lacks $want"
done
log "ok: $unit keeps guests across restarts, its flags exist in kcored all-in-one --help"

# 3. The quickstart's choice, and what it installs.
shellcheck -x scripts/quickstart.sh scripts/lib/kcored-service.sh scripts/check-service.sh ||
    fail "shellcheck"
# shellcheck source=scripts/lib/kcored-service.sh
. scripts/lib/kcored-service.sh
mkdir -p "$tmp/sd/proc/1" "$tmp/sd/run/systemd/system" "$tmp/other/proc/1" "$tmp/leftover/proc/1" \
    "$tmp/leftover/run/systemd/system"
echo systemd >"$tmp/sd/proc/1/comm"
echo tini >"$tmp/other/proc/1/comm"
echo bash >"$tmp/leftover/proc/1/comm"
[ "$(kcored_service_manager "$tmp/sd")" = systemd ] || fail "PID 1 systemd: quickstart did not pick systemd"
[ "$(kcored_service_manager "$tmp/other")" = nohup ] || fail "PID 1 tini: quickstart did not pick nohup"
[ "$(kcored_service_manager "$tmp/leftover")" = nohup ] ||
    fail "a stale /run/systemd/system without systemd as PID 1: quickstart did not pick nohup"
here=$(kcored_service_manager /)
want="nohup"
if [ "$(cat /proc/1/comm)" = systemd ] && [ -d /run/systemd/system ]; then want="systemd"; fi
[ "$here" = "$want" ] || fail "on this machine (PID 1: $(cat /proc/1/comm)) the quickstart picks $here, expected $want"
log "ok: the quickstart runs kcored with $here here (PID 1 is $(cat /proc/1/comm)); systemd only where PID 1 is systemd"

kcored_install_unit "$tmp/root" "$repo" tcg
cmp -s "$unit" "$tmp/root/etc/systemd/system/kcored.service" || fail "the installed unit differs from $unit"
[ "$(grep '^KCORE_ACCEL=' "$tmp/root/etc/default/kcored")" = KCORE_ACCEL=tcg ] ||
    fail "/etc/default/kcored does not say KCORE_ACCEL=tcg"
echo 'KCORED_ARGS="--listen 127.0.0.1:9090"' >>"$tmp/root/etc/default/kcored"
kcored_install_unit "$tmp/root" "$repo" auto
env=$(cat "$tmp/root/etc/default/kcored")
if [ "$(grep -c '^KCORE_ACCEL=' <<<"$env")" != 1 ] || ! grep -qx KCORE_ACCEL=auto <<<"$env" ||
    ! grep -qxF 'KCORED_ARGS="--listen 127.0.0.1:9090"' <<<"$env"; then
    fail "a second install did not keep KCORED_ARGS and replace KCORE_ACCEL: $env"
fi
log "ok: the unit and /etc/default/kcored are installed as the quickstart does (KCORED_ARGS kept)"
