#!/usr/bin/env bash
# Build (and cache) the tiny kcore test guest: a Debian cloud kernel plus a
# busybox initramfs whose /init prints markers on the serial console, powers
# off on the ACPI power button and then runs a root shell on the console.
#
# Usage: scripts/build-test-guest.sh [--verify] [--force] [--offline] [OUTDIR]
#   OUTDIR defaults to $KCORE_GUEST_DIR, then /var/cache/kcore/test-guest.
#   --verify  boot the guest under TCG (q35, and microvm when possible) and
#             check the markers, the shell, virtio-blk/net and ACPI poweroff.
#   --force   rebuild even if the cached guest has the right VERSION stamp.
#   --offline do not ask apt whether a newer kernel exists: reuse the cached
#             guest if it was built by this very script (fastest; no network).
#
# See docs/test-guest.md for the /init contract the tests rely on.
set -euo pipefail
umask 022

readonly KERNEL_META_PKG=linux-image-cloud-amd64
readonly BUSYBOX_PKG=busybox-static
# Modules to insmod, in this order (dependencies are pulled in first
# automatically). Missing or built-in ones are skipped.
readonly WANTED_MODULES=(
    virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
    virtio_mmio failover net_failover virtio_net virtio_blk
    button evdev
)
# Loaded only when a disk labelled cidata (a cloud-init NoCloud seed, vfat) is found, so a
# guest without one boots as fast as before.
readonly CIDATA_MODULES=(fat vfat nls_cp437 nls_ascii nls_utf8)

log() { printf 'build-test-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
}

verify=0
force=0
offline=0
outdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --verify) verify=1 ;;
        --force) force=1 ;;
        --offline) offline=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; [ $# -gt 0 ] && outdir=$1; break ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [ -z "$outdir" ] || die "only one OUTDIR may be given"; outdir=$1 ;;
    esac
    shift
done
outdir=${outdir:-${KCORE_GUEST_DIR:-/var/cache/kcore/test-guest}}
outdir=${outdir%/}
[ -n "$outdir" ] || die "OUTDIR must not be /"
case "$outdir" in /*) ;; *) outdir="$PWD/$outdir" ;; esac

script_path=$(readlink -f "$0")
script_hash=$(sha256sum "$script_path" | cut -d' ' -f1)

# ---------------------------------------------------------------------------
# Package resolution
# ---------------------------------------------------------------------------
apt_updated=0
apt_update() {
    [ "$apt_updated" = 0 ] || return 0
    log "running apt-get update"
    apt-get update -qq >&2 || log "warning: apt-get update failed"
    apt_updated=1
}

# Resolve, with one apt-cache call (each one costs ~1s when apt's binary
# cache is disabled, as in Debian container images):
#   kpkg  the versioned kernel package behind the meta package
#         (e.g. linux-image-6.1.0-56-cloud-amd64) and kver its version,
#   bbver the candidate version of busybox-static.
kpkg="" kver="" bbver=""
resolve_all() {
    local out pkg="" line dep=""
    kpkg="" kver="" bbver=""
    out=$(apt-cache show --no-all-versions "$KERNEL_META_PKG" "$BUSYBOX_PKG" 2>/dev/null) || true
    while IFS= read -r line; do
        case "$line" in
            Package:\ *) pkg=${line#Package: } ;;
            Version:\ *) [ "$pkg" != "$BUSYBOX_PKG" ] || bbver=${line#Version: } ;;
            Depends:\ *) [ "$pkg" != "$KERNEL_META_PKG" ] || dep=${line#Depends: } ;;
        esac
    done <<<"$out"
    if [[ $dep =~ (linux-image-[0-9][^ ,|]*)( \(= ([^\)]+)\))? ]]; then
        kpkg=${BASH_REMATCH[1]}
        kver=${BASH_REMATCH[3]}
        if [ -z "$kver" ]; then
            kver=$(apt-cache policy "$kpkg" 2>/dev/null |
                awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }') || true
        fi
    fi
    [ -n "$kpkg" ] && [ -n "$kver" ] && [ -n "$bbver" ]
}

if [ "$offline" = 1 ]; then
    :
elif ! resolve_all; then
    apt_update
    resolve_all || true
fi

stamp_for() {
    printf 'script-sha256=%s\nkernel=%s %s\nbusybox=%s %s\n' \
        "$script_hash" "$kpkg" "$kver" "$BUSYBOX_PKG" "$bbver"
}

print_paths() {
    echo "kernel: $outdir/vmlinuz"
    echo "initrd: $outdir/initrd.img"
    echo "stamp:  $outdir/VERSION"
}

cache_complete() {
    [ -s "$outdir/vmlinuz" ] && [ -s "$outdir/initrd.img" ] && [ -s "$outdir/VERSION" ]
}

# ---------------------------------------------------------------------------
# Locking (concurrent CI jobs) and the cache check
# ---------------------------------------------------------------------------
parent=$(dirname "$outdir")
mkdir -p "$parent"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$parent/.$(basename "$outdir").lock"
    flock 9
fi

cached=0
if [ "$force" = 0 ] && cache_complete; then
    if [ -n "$kpkg" ] && [ -n "$kver" ] && [ -n "$bbver" ]; then
        [ "$(cat "$outdir/VERSION")" = "$(stamp_for)" ] && cached=1
    elif grep -qx "script-sha256=$script_hash" "$outdir/VERSION"; then
        # --offline, or the package lists are unusable: keep what we have.
        [ "$offline" = 1 ] || log "warning: cannot resolve $KERNEL_META_PKG; using the cached guest"
        cached=1
    fi
fi

if [ "$cached" = 0 ]; then
    if [ "$offline" = 1 ] && ! resolve_all; then
        die "--offline: no usable cached guest in $outdir and apt cannot resolve the packages"
    fi
    [ -n "$kpkg" ] || die "cannot resolve the kernel package behind $KERNEL_META_PKG (apt-cache show)"
    [ -n "$kver" ] && [ -n "$bbver" ] || die "cannot find candidate versions of $kpkg / $BUSYBOX_PKG"
    if [ -e "$outdir" ]; then
        [ -d "$outdir" ] || die "$outdir exists and is not a directory"
        # Never swap away a directory that is not ours (e.g. OUTDIR=/tmp).
        for f in "$outdir"/* "$outdir"/.[!.]*; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            case "$(basename "$f")" in
                vmlinuz|initrd.img|VERSION) ;;
                *) die "refusing to replace $outdir: it contains $(basename "$f")" ;;
            esac
        done
    fi
fi

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
work=""
staging=""
qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    [ -z "$work" ] || rm -rf "$work"
    [ -z "$staging" ] || rm -rf "$staging"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build() {
    local t0=$SECONDS
    work=$(mktemp -d "${TMPDIR:-/tmp}/kcore-guest-build.XXXXXX")
    local dl="$work/dl" kroot="$work/kernel" bbroot="$work/busybox" root="$work/root"
    mkdir -p "$dl" "$kroot" "$bbroot" "$root"

    log "downloading $kpkg=$kver and $BUSYBOX_PKG=$bbver"
    local -a apt_opts=(-q)
    # apt-get download drops to the _apt user, which cannot write to our
    # private temp dir; we are only fetching files, so stay as we are.
    [ "$(id -u)" != 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
    if ! (cd "$dl" && apt-get download "${apt_opts[@]}" "$kpkg=$kver" "$BUSYBOX_PKG=$bbver" >&2); then
        # Stale package lists: the mirror may have moved on.
        apt_update
        resolve_all || die "cannot resolve packages after apt-get update"
        (cd "$dl" && rm -f ./*.deb &&
            apt-get download "${apt_opts[@]}" "$kpkg=$kver" "$BUSYBOX_PKG=$bbver" >&2) ||
            die "apt-get download failed"
    fi
    local deb
    for deb in "$dl"/*.deb; do
        case "$(basename "$deb")" in
            linux-image-*) dpkg -x "$deb" "$kroot" ;;
            busybox-static_*) dpkg -x "$deb" "$bbroot" ;;
        esac
    done

    # --- kernel ---
    local krel
    krel=$(ls "$kroot/lib/modules" 2>/dev/null | head -n1)
    [ -n "$krel" ] || die "no /lib/modules in $kpkg"
    local vmlinuz="$kroot/boot/vmlinuz-$krel"
    [ -f "$vmlinuz" ] || die "no $vmlinuz in $kpkg"
    local config="$kroot/boot/config-$krel"
    if [ -f "$config" ] && ! grep -qx 'CONFIG_PVH=y' "$config"; then
        log "warning: $krel lacks CONFIG_PVH=y (microvm/qboot direct boot may fail)"
    fi

    # --- busybox ---
    local bb="$bbroot/bin/busybox"
    [ -x "$bb" ] || die "no bin/busybox in $BUSYBOX_PKG"

    # --- rootfs skeleton ---
    mkdir -p "$root"/{bin,dev,etc/acpi/PWRF,lib/modules,mnt,proc,root,run,sys,tmp,usr,var/log}
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    ln -s bin "$root/sbin"
    ln -s ../bin "$root/usr/bin"
    ln -s ../bin "$root/usr/sbin"
    ln -s ../run "$root/var/run"
    install -m 0755 "$bb" "$root/bin/busybox"
    local applet n=0
    for applet in $("$bb" --list); do
        case "$applet" in busybox|*/*) continue ;; esac
        ln -s busybox "$root/bin/$applet"
        n=$((n + 1))
    done
    log "busybox: $n applets"
    # The kernel opens /dev/console before /init runs (devtmpfs is not
    # mounted yet), so the archive needs the node. Needs root; /init also
    # reopens the console after mounting devtmpfs.
    mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null ||
        log "warning: cannot mknod /dev/console (not root?); relying on /init to reopen it"
    mknod -m 0666 "$root/dev/null" c 1 3 2>/dev/null || true

    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\ntty:x:5:\n' >"$root/etc/group"
    printf 'kcore-guest\n' >"$root/etc/hostname"
    printf '/bin/sh\n' >"$root/etc/shells"

    # --- modules ---
    local moddir="$kroot/lib/modules/$krel"
    declare -A modpath=() builtin=() done_mod=()
    local f name
    while IFS= read -r -d '' f; do
        name=$(basename "$f")
        name=${name%%.ko*}
        modpath[${name//-/_}]=$f
    done < <(find "$moddir" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.gz' -o -name '*.ko.zst' \) -print0)
    if [ -f "$moddir/modules.builtin" ]; then
        while IFS= read -r f; do
            name=$(basename "$f" .ko)
            builtin[${name//-/_}]=1
        done <"$moddir/modules.builtin"
    fi

    local -a order=()
    decompress() { # src dst
        case "$1" in
            *.ko) cp "$1" "$2" ;;
            *.ko.xz) if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else "$bb" xz -dc "$1" >"$2"; fi ;;
            *.ko.gz) gzip -dc "$1" >"$2" ;;
            *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $1"; zstd -qdc "$1" >"$2" ;;
        esac
    }
    add_mod() {
        local m=${1//-/_} dep deps
        [ -z "${done_mod[$m]:-}" ] || return 0
        done_mod[$m]=1
        if [ -n "${builtin[$m]:-}" ]; then
            log "module $m: built in"
            return 0
        fi
        if [ -z "${modpath[$m]:-}" ]; then
            log "module $m: not found, skipped"
            return 0
        fi
        decompress "${modpath[$m]}" "$root/lib/modules/$m.ko"
        deps=$(tr '\0' '\n' <"$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n1)
        for dep in ${deps//,/ }; do
            add_mod "$dep"
        done
        order+=("$m")
    }
    for name in "${WANTED_MODULES[@]}"; do
        add_mod "$name"
    done
    printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"
    log "modules (load order): ${order[*]}"
    order=()
    for name in "${CIDATA_MODULES[@]}"; do
        add_mod "$name"
    done
    printf '%s\n' "${order[@]}" >"$root/lib/modules/cidata-order"
    log "modules for a cidata seed: ${order[*]}"

    # --- ACPI power button handler (busybox acpid runs /etc/acpi/PWRF/00000080) ---
    cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# Power button pressed (QMP system_powerdown): shut down now.
# Leading empty line: the console may be in the middle of a shell prompt.
printf '\nKCORE-GUEST-POWEROFF\n' >/dev/console
sync
# Unmount (or at least remount read-only) any block-device filesystems so
# ext4 images come back clean.
for mp in $(awk '$1 ~ /^\/dev\// { print $2 }' /proc/mounts | sort -r); do
    umount "$mp" 2>/dev/null || mount -o remount,ro "$mp" 2>/dev/null || true
done
sync
poweroff -f
EOF
    chmod 0755 "$root/etc/acpi/PWRF/00000080"

    # --- udhcpc hook: plain `udhcpc -i eth0` configures the interface ---
    mkdir -p "$root/etc/udhcpc" "$root/usr/share/udhcpc"
    cat >"$root/etc/udhcpc/default.script" <<'HOOK'
#!/bin/sh
# busybox udhcpc hook: configure $interface from the lease.
case "$1" in
    deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        [ -n "$dns" ] && { for s in $dns; do echo "nameserver $s"; done >/etc/resolv.conf; }
        echo "KCORE-DHCP-BOUND $interface $ip" >/dev/console
        ;;
esac
exit 0
HOOK
    chmod 0755 "$root/etc/udhcpc/default.script"
    ln -sf /etc/udhcpc/default.script "$root/usr/share/udhcpc/default.script"

    # --- /init ---
    cat >"$root/init" <<'EOF'
#!/bin/sh
# kcore test guest /init, generated by scripts/build-test-guest.sh.
# Contract: docs/test-guest.md.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=vt100 PS1='kcore-guest# '
umask 022
set -f

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
exec 0</dev/console 1>/dev/console 2>&1

while read -r m; do
    [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" >/dev/null 2>&1
done </lib/modules/load-order

hostname kcore-guest
ip link set lo up 2>/dev/null

acpi=poweroff
echo=on
marker=
root=
dhcp=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kcore.acpi=*) acpi=${arg#kcore.acpi=} ;;
        kcore.echo=*) echo=${arg#kcore.echo=} ;;
        kcore.marker=*) marker=${arg#kcore.marker=}; marker=${marker#\"}; marker=${marker%\"} ;;
        kcore.root=*) root=${arg#kcore.root=} ;;
        kcore.dhcp=*) dhcp=${arg#kcore.dhcp=} ;;
    esac
done

# kcore.root=/dev/vda: mount that disk (ext4) on /mnt, for tests of persistent disks.
if [ -n "$root" ]; then
    mkdir -p /mnt
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b "$root" ] && break; sleep 0.2; done
    if mount -t ext4 "$root" /mnt 2>/dev/null; then
        echo "KCORE-ROOT-MOUNTED $root"
    else
        echo "KCORE-ROOT-FAILED $root"
    fi
fi

# A cloud-init NoCloud seed (a disk labelled cidata, found by busybox findfs): mount it
# read-only on /run/cidata and print what it holds, so tests can assert on it
# (docs/test-guest.md).
cidata=$(findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null || true)
if [ -n "$cidata" ]; then
    while read -r m; do
        [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" >/dev/null 2>&1
    done </lib/modules/cidata-order
    mkdir -p /run/cidata
    if mount -t vfat -o ro "$cidata" /run/cidata 2>/dev/null; then
        echo "KCORE-CIDATA $cidata"
        for f in user-data meta-data network-config; do
            [ -f "/run/cidata/$f" ] || continue
            n=0
            while { IFS= read -r line || [ -n "$line" ]; } && [ "$n" -lt 40 ]; do
                echo "KCORE-CIDATA $f: $line"
                n=$((n + 1))
            done <"/run/cidata/$f"
        done
        h=$(sed -n 's/^local-hostname:[[:space:]]*//p' /run/cidata/meta-data 2>/dev/null | head -n1)
        if [ -n "$h" ]; then
            hostname "$h"
            echo "KCORE-CIDATA-HOSTNAME $h"
        fi
    else
        echo "KCORE-CIDATA-FAILED $cidata"
    fi
fi

if [ "$acpi" != ignore ]; then
    acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid
fi

echo KCORE-GUEST-READY
[ -n "$marker" ] && echo "$marker"

# kcore.dhcp=eth0: get a lease on that interface in the background (the hook prints
# KCORE-DHCP-BOUND <iface> <ip> once it has one).
if [ -n "$dhcp" ]; then
    udhcpc -i "$dhcp" -b -q -t 20 -T 1 -s /etc/udhcpc/default.script >/dev/null 2>&1
fi

set +f
while :; do
    # kcore.echo=off: no tty echo, which also makes ash skip line editing
    # (no ESC[6n cursor queries): only prompts and command output.
    [ "$echo" = off ] && stty -echo
    echo KCORE-GUEST-SHELL
    setsid cttyhack sh
    sleep 0.2
done
EOF
    chmod 0755 "$root/init"

    # --- pack the initramfs ---
    local cpio_cmd
    if command -v cpio >/dev/null 2>&1; then
        cpio_cmd=(cpio --quiet -o -H newc -R 0:0)
    else
        cpio_cmd=("$bb" cpio -o -H newc -R 0:0)
    fi
    staging=$(mktemp -d "$parent/.$(basename "$outdir").new.XXXXXX")
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "${cpio_cmd[@]}") |
        gzip -9n >"$staging/initrd.img"
    install -m 0644 "$vmlinuz" "$staging/vmlinuz"
    chmod 0644 "$staging/initrd.img"
    stamp_for >"$staging/VERSION"
    chmod 0644 "$staging/VERSION"
    chmod 0755 "$staging"

    # --- move into place: one rename of the whole directory ---
    if [ -e "$outdir" ]; then
        local old
        old=$(mktemp -d "$parent/.$(basename "$outdir").old.XXXXXX")
        mv -T "$outdir" "$old/guest"
        mv -T "$staging" "$outdir"
        rm -rf "$old"
    else
        mv -T "$staging" "$outdir"
    fi
    staging=""
    rm -rf "$work"
    work=""
    log "built $krel guest in $((SECONDS - t0))s (initrd $(stat -c %s "$outdir/initrd.img") bytes)"
}

if [ "$cached" = 1 ]; then
    log "cached guest is up to date ($(sed -n "s/^kernel=//p" "$outdir/VERSION"))"
else
    build
fi
chmod 0755 "$outdir"
chmod 0644 "$outdir/vmlinuz" "$outdir/initrd.img" "$outdir/VERSION"

# QEMU runs as the unprivileged kcore-qemu user: every ancestor directory
# must be searchable by others.
d=$outdir
while [ "$d" != / ] && [ -n "$d" ]; do
    if [ "$(( 0$(stat -c %a "$d") & 1 ))" = 0 ]; then
        log "warning: $d is not searchable by others; kcore-qemu cannot reach the guest"
    fi
    d=$(dirname "$d")
done

# ---------------------------------------------------------------------------
# --verify: boot it under TCG and check the contract
# ---------------------------------------------------------------------------
vdir=""
serial_sock="" serial_log="" qmp_sock=""

qmp() { # command (one JSON object) -> QMP responses on stdout
    { printf '{"execute":"qmp_capabilities"}\n%s\n' "$1"; sleep 0.5; } |
        socat -t 2 - "UNIX-CONNECT:$qmp_sock" 2>/dev/null || true
}

# Type a line on the guest console and keep the connection open until the
# serial log matches REGEX (or, with an empty REGEX, until QEMU exits), at
# most TIMEOUT seconds: QEMU only pulls input as fast as the emulated UART
# drains it, and drops what is left when the client disconnects.
serial_send() { # text regex timeout
    local text=$1 re=$2 t=$3
    {
        printf '%s\n' "$text"
        if [ -n "$re" ]; then
            wait_log "$re" "$t" || true
        else
            local deadline=$((SECONDS + t))
            while [ "$SECONDS" -lt "$deadline" ] && kill -0 "$qemu_pid" 2>/dev/null; do sleep 0.1; done
        fi
    } | socat -u - "UNIX-CONNECT:$serial_sock" 2>/dev/null || true
}

wait_log() { # regex timeout_s -> 0 when the serial log matches
    local re=$1 deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        tr -d '\r' <"$serial_log" 2>/dev/null | grep -qE -- "$re" && return 0
        kill -0 "$qemu_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

wait_exit() { # timeout_s -> 0 if QEMU exited in time
    local deadline=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$qemu_pid" 2>/dev/null || { wait "$qemu_pid" 2>/dev/null || true; qemu_pid=""; return 0; }
        sleep 0.1
    done
    return 1
}

now_ms() { date +%s%3N; }

# boot NAME EXTRA_APPEND MACHINE_ARGS... ; sets qemu_pid, serial_log
boot() {
    local name=$1 append=$2; shift 2
    serial_sock="$vdir/$name.serial.sock"
    serial_log="$vdir/$name.serial.log"
    qmp_sock="$vdir/$name.qmp.sock"
    : >"$serial_log"
    qemu-system-x86_64 "$@" \
        -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$outdir/vmlinuz" -initrd "$outdir/initrd.img" \
        -append "console=ttyS0 quiet panic=-1 $append" \
        -chardev "socket,id=ser0,path=$serial_sock,server=on,wait=off,logfile=$serial_log" \
        -serial chardev:ser0 \
        -qmp "unix:$qmp_sock,server=on,wait=off" \
        -drive "file=$vdir/disk.img,if=none,id=d0,format=raw,snapshot=on" \
        -netdev hubport,id=n0,hubid=0 \
        >"$vdir/$name.qemu.log" 2>&1 &
    qemu_pid=$!
}

fail_boot() {
    log "verify FAILED ($1): $2"
    log "--- serial log ($serial_log) ---"
    tr -d '\r' <"$serial_log" | tail -n 40 >&2 || true
    log "--- qemu output ---"
    tail -n 20 "${serial_log%.serial.log}.qemu.log" >&2 || true
    exit 1
}

# One boot: markers, shell + virtio devices, then the power button.
verify_boot() { # name acpi_mode(poweroff|ignore) machine-args...
    local name=$1 mode=$2; shift 2
    local marker="KCORE-VERIFY-$name-$$" extra="" t0 t_ready
    [ "$mode" = ignore ] && extra="kcore.acpi=ignore"
    t0=$(now_ms)
    boot "$name" "kcore.marker=$marker $extra $boot_extra" "$@"
    wait_log '^KCORE-GUEST-READY$' "$boot_timeout" || fail_boot "$name" "no KCORE-GUEST-READY within ${boot_timeout}s"
    t_ready=$(now_ms)
    wait_log "^$marker\$" 5 || fail_boot "$name" "kcore.marker line missing"
    tr -d '\r' <"$serial_log" | grep -A1 -x KCORE-GUEST-READY | tail -n1 | grep -qx -- "$marker" ||
        fail_boot "$name" "kcore.marker line is not right after KCORE-GUEST-READY"
    wait_log '^KCORE-GUEST-SHELL$' 10 || fail_boot "$name" "no KCORE-GUEST-SHELL"
    sleep 0.5
    # $((40+2)) is expanded by the guest shell, so the echoed command line
    # itself cannot match.
    serial_send '[ -e /sys/block/vda ] && [ -e /sys/class/net/eth0 ] && echo VIRTIO-$((40+2))-OK' 'VIRTIO-42-OK' 20
    wait_log 'VIRTIO-42-OK' 1 || fail_boot "$name" "shell did not answer or virtio-blk/net missing"
    local t_pd t_exit qmp_job
    t_pd=$(now_ms)
    qmp '{"execute":"system_powerdown"}' >"$vdir/$name.qmp.out" &
    qmp_job=$!
    if [ "$mode" = ignore ]; then
        wait "$qmp_job" || true
        grep -q '"return"' "$vdir/$name.qmp.out" || fail_boot "$name" "QMP did not answer: $(cat "$vdir/$name.qmp.out")"
        if wait_exit 8 || tr -d '\r' <"$serial_log" | grep -qx KCORE-GUEST-POWEROFF; then
            fail_boot "$name" "guest reacted to the power button although kcore.acpi=ignore"
        fi
        serial_send 'poweroff -f' '' 20
        wait_exit 20 || fail_boot "$name" "'poweroff -f' from the shell did not stop QEMU"
        log "verify $name: OK (KCORE-GUEST-READY after $((t_ready - t0)) ms; power button ignored for 8 s; 'poweroff -f' works)"
    else
        wait_exit "$powerdown_timeout" || fail_boot "$name" "QEMU still running ${powerdown_timeout}s after system_powerdown"
        t_exit=$(now_ms)
        wait "$qmp_job" || true
        grep -q '"return"' "$vdir/$name.qmp.out" || fail_boot "$name" "QMP did not answer: $(cat "$vdir/$name.qmp.out")"
        grep -qx KCORE-GUEST-POWEROFF < <(tr -d '\r' <"$serial_log") ||
            fail_boot "$name" "QEMU exited but the guest never printed KCORE-GUEST-POWEROFF"
        log "verify $name: OK (KCORE-GUEST-READY after $((t_ready - t0)) ms; QEMU exited $((t_exit - t_pd)) ms after system_powerdown)"
    fi
}

if [ "$verify" = 1 ]; then
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found"
    if ! command -v socat >/dev/null 2>&1; then
        log "installing socat (needed to talk to QMP and the serial console)"
        apt-get install -y -qq socat >&2 || { apt_update; apt-get install -y -qq socat >&2; } || true
        command -v socat >/dev/null 2>&1 || die "socat is needed for --verify"
    fi
    # QEMU runs as kcore-qemu: check that such a user can read the files.
    if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
        u=kcore-qemu
        id "$u" >/dev/null 2>&1 || u=nobody
        if id "$u" >/dev/null 2>&1; then
            runuser -u "$u" -- test -r "$outdir/vmlinuz" -a -r "$outdir/initrd.img" ||
                die "user $u cannot read $outdir/vmlinuz and initrd.img"
        fi
    fi
    boot_timeout=${KCORE_GUEST_BOOT_TIMEOUT:-120}
    powerdown_timeout=${KCORE_GUEST_POWERDOWN_TIMEOUT:-30}
    boot_extra=${KCORE_GUEST_VERIFY_APPEND:-}
    vdir=$(mktemp -d "${TMPDIR:-/tmp}/kcore-guest-verify.XXXXXX")
    trap 'cleanup; rm -rf "$vdir"' EXIT
    truncate -s 1M "$vdir/disk.img"

    q35=(-machine q35,accel=tcg)
    [ -f /usr/share/qemu/qboot.rom ] && q35+=(-bios /usr/share/qemu/qboot.rom)
    q35+=(-device virtio-blk-pci,drive=d0 -device virtio-net-pci,netdev=n0)
    verify_boot q35 poweroff "${q35[@]}"
    verify_boot q35-acpi-ignore ignore "${q35[@]}"

    khz=$(awk -F: '/^cpu MHz/ { printf "%d\n", $2 * 1000 + 0.5; exit }' /proc/cpuinfo 2>/dev/null || true)
    if [ -n "$khz" ] && [ "$khz" -gt 0 ]; then
        boot_extra="tsc_early_khz=$khz ${KCORE_GUEST_VERIFY_APPEND:-}"
        verify_boot microvm poweroff -machine microvm,accel=tcg \
            -device virtio-blk-device,drive=d0 -device virtio-net-device,netdev=n0
    else
        log "verify microvm: skipped (no 'cpu MHz' in /proc/cpuinfo for tsc_early_khz)"
    fi
    log "verify: all boots OK"
fi

print_paths
