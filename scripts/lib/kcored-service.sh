# shellcheck shell=bash
# How the quickstart runs kcored on a non-NixOS host; source this file.
#
# Where systemd is the init system, as a service (dist/systemd/kcored.service, journal
# logs, restarted on failure, started at boot); elsewhere (containers, CI machines whose
# PID 1 is not systemd) with nohup, logging to /var/log/kcored.log, as before.

# "systemd" if systemd runs the system under ROOT (/ for this host): PID 1 is systemd and
# /run/systemd/system exists (sd_booted(3)); else "nohup".
kcored_service_manager() {
    local root=${1%/}
    local comm=
    [ -r "$root/proc/1/comm" ] && comm=$(cat "$root/proc/1/comm")
    if [ "$comm" = systemd ] && [ -d "$root/run/systemd/system" ]; then
        echo systemd
    else
        echo nohup
    fi
}

# Install the unit under ROOT (/etc/systemd/system/kcored.service) from the repository
# REPO, with KCORE_ACCEL=ACCEL in /etc/default/kcored (other lines there are kept).
kcored_install_unit() {
    local root=$1 repo=$2 accel=$3
    local env=$root/etc/default/kcored
    install -D -m 0644 "$repo/dist/systemd/kcored.service" "$root/etc/systemd/system/kcored.service"
    mkdir -p "$root/etc/default"
    if [ -f "$env" ]; then
        grep -v '^KCORE_ACCEL=' "$env" >"$env.new" || true
    else
        printf '# kcored (all-in-one) settings: KCORE_ACCEL, KCORED_ARGS (more flags)\n' >"$env.new"
    fi
    printf 'KCORE_ACCEL=%s\n' "$accel" >>"$env.new"
    chmod 0644 "$env.new"
    mv "$env.new" "$env"
}
