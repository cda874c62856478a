#!/usr/bin/env bash
# install-to-disk (nixos/install-to-disk.sh) on a 1 GiB loop-device file, for real up to
# nixos-install: --dry-run changes nothing, a "no" at the first question changes nothing,
# bad arguments change nothing; then a full run with --yes --limited-kernel, twice (the
# second over the first: the old volume group is removed), and checked:
#   - the GPT: an EFI system partition "ESP" of the size asked, an LVM partition;
#   - FAT32 on the ESP (fsck.vfat), the volume group with root and kcore, ext4 on both
#     (labels nixos and kcore, e2fsck), mounted at /, /boot and /var/lib/kcore;
#   - the written configuration: every file parses; flake.nix names the node and kcore's
#     flake; with nixpkgs' lib, disks.nix and kcore-node.nix are evaluated with kcore's
#     module (nixos/tests/stub.nix): the ESP's UUID, the LVs, the controller and the join
#     token file; the CA, the token (0600) and kcore's source under /etc/kcore.
# This kernel has no device-mapper: LVM is written as metadata only and install-to-disk
# reaches each volume through a loop device over its extents, as device-mapper's linear
# target would (docs/nixos.md). Needs root, util-linux, fdisk, dosfstools, e2fsprogs,
# lvm2, nix-bin; fails (never skips) naming what to install. Takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/lib/nix.sh
. scripts/lib/nix.sh
log() { printf 'check-install: %s\n' "$*" >&2; }
fail() {
    printf 'check-install: FAIL: %s\n' "$*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "run as root (loop devices, mkfs, mount)"
for t in losetup:mount sfdisk:fdisk wipefs:util-linux partx:util-linux blkid:util-linux \
    findmnt:util-linux mount:mount mkfs.vfat:dosfstools fsck.vfat:dosfstools \
    mkfs.ext4:e2fsprogs e2fsck:e2fsprogs lvm:lvm2; do
    command -v "${t%%:*}" >/dev/null ||
        fail "${t%%:*} not found: apt-get install ${t#*:} (bash scripts/deps.sh does)"
done
require_nix

KCORE_NIX_TMP=$(mktemp -d)
export KCORE_NIX_TMP
tmp=$KCORE_NIX_TMP
disk=
mnt=$tmp/mnt
host=node7
vg=vg0

# lvm2 sees only the test's disk (another vg0 elsewhere must not matter, and ours must
# not disturb anyone): a config of its own through LVM_SYSTEM_DIR, which install-to-disk
# inherits.
export LVM_SYSTEM_DIR=$tmp/lvm LVM_SUPPRESS_FD_WARNINGS=1
lvm_cfg() {
    mkdir -p "$LVM_SYSTEM_DIR"
    cat >"$LVM_SYSTEM_DIR/lvm.conf" <<EOF
devices {
    filter = [ "a|^${disk}p[0-9]+\$|", "r|.*|" ]
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
backup {
    backup = 0
    archive = 0
}
EOF
}

# Unmount what install-to-disk mounted and detach the loop devices over its volumes.
unmount_all() {
    [ -n "$disk" ] || return 0
    umount -R "$mnt" 2>/dev/null || true
    local l
    for l in $(losetup -j "${disk}p2" -O NAME -n 2>/dev/null); do
        losetup -d "$l" 2>/dev/null || true
    done
}
teardown() {
    [ -n "$disk" ] || return 0
    unmount_all
    lvm vgremove --driverloaded n -ff -y "$vg" >/dev/null 2>&1 || true
    lvm pvremove --driverloaded n -ff -y "${disk}p2" >/dev/null 2>&1 || true
}
cleanup() {
    teardown
    [ -z "$disk" ] || losetup -d "$disk" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

truncate -s 1G "$tmp/disk.img"
disk=$(losetup -f --show -P "$tmp/disk.img")
lvm_cfg
log "disk: $disk (a 1 GiB file)"

# What install-to-disk gets: a CA, a token file, kcore's flake source, an SSH key.
cat >"$tmp/ca.crt" <<'EOF'
-----BEGIN CERTIFICATE-----
MIIBdzCCAR2gAwIBAgIUKcoreTestCaNotARealCertificate0wCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----
EOF
printf 'Zm9vYmFyLXRva2VuLTEyMzQ1Njc4OTA\n' >"$tmp/token"
mkdir -p "$tmp/kcore-src/nixos"
cp "$repo/flake.nix" "$tmp/kcore-src/"
echo '{ }' >"$tmp/kcore-src/nixos/default.nix"
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKcoreTestKeyNotARealOne0000000000000000000 ops@example" >"$tmp/key.pub"

itd() { bash nixos/install-to-disk.sh "$@"; }
args=(--disk "$disk" --hostname "$host" --controller 10.0.0.1:9090 --ca-cert "$tmp/ca.crt"
    --advertise node7.lan:9091
    --join-token-file "$tmp/token" --ssh-key "$tmp/key.pub" --bridge-interface enp3s0
    --esp-size 64M --root-size 600M --kcore-source "$tmp/kcore-src" --state-version 25.11
    --mnt "$mnt")

untouched() {
    if [ -n "$(blkid -p "$disk" 2>/dev/null)" ] || sfdisk -d "$disk" >/dev/null 2>&1; then
        fail "$1 changed $disk"
    fi
}

# --dry-run: the plan, nothing else.
plan=$(itd "${args[@]}" --dry-run 2>&1) || fail "--dry-run failed: $plan"
for want in "everything on it is erased" "(dry run: nothing changed)" "nixos-install --flake $mnt/etc/nixos#$host"; do
    grep -qF "$want" <<<"$plan" || fail "--dry-run plan lacks '$want': $plan"
done
untouched "--dry-run"
# Saying no at the first question.
if out=$(echo n | itd "${args[@]}" --no-install 2>&1); then fail "answering no did not stop: $out"; fi
grep -q "stopped: nothing more was changed" <<<"$out" || fail "answering no: $out"
untouched "answering no"
# Bad arguments.
bads=("--controller 10.0.0.1" "--controller 10.0.0.1:70000" "--controller 10.0.0.300:9090"
    "--advertise n7:0" "--hostname Node_7"
    "--root-size 32" "--kcore-size 101%FREE" "--vg -x")
for bad in "${bads[@]}"; do
    read -r opt val <<<"$bad"
    if out=$(itd "${args[@]}" "$opt" "$val" --yes --limited-kernel 2>&1); then
        fail "install-to-disk accepted $bad"
    fi
    grep -q -- "$opt" <<<"$out" || fail "the refusal of $bad does not name $opt: $out"
done
untouched "bad arguments"
log "ok: --dry-run, a no, and bad arguments (${#bads[@]} kinds) leave the disk untouched"
# Each destructive step asks: yes to partitioning, no to the filesystems.
if out=$(printf 'y\nn\n' | itd "${args[@]}" --limited-kernel 2>&1); then fail "answering no to the filesystems did not stop: $out"; fi
grep -q "Create FAT32 on ${disk}p1 and LVM" <<<"$out" || fail "no question before the filesystems: $out"
sfdisk -d "$disk" 2>/dev/null | grep -q '^label: gpt' || fail "answering yes to partitioning did not partition"
if [ -n "$(blkid -p -s TYPE -o value "${disk}p1" 2>/dev/null)" ] || lvm vgs "$vg" >/dev/null 2>&1; then
    fail "answering no to the filesystems still made some"
fi
log "ok: every destructive step asks: partitioned after a yes, no filesystems after a no"

# The real run, twice: the second one over the first.
for round in 1 2; do
    out=$(itd "${args[@]}" --yes --limited-kernel 2>&1) || fail "install-to-disk (run $round): $out"
    grep -q "stopped before nixos-install" <<<"$out" || fail "run $round did not stop before nixos-install: $out"
    [ "$round" = 2 ] || unmount_all
done
grep -q "removing the old volume group $vg on $disk" <<<"$out" ||
    fail "the second run did not remove the first one's volume group: $out"
printf '%s\n' "$out" | sed 's/^/  | /' >&2

# The partitions.
dump=$(sfdisk -d "$disk")
grep -q '^label: gpt' <<<"$dump" || fail "not GPT: $dump"
p1=$(grep "^${disk}p1 " <<<"$dump") || fail "no partition 1: $dump"
p2=$(grep "^${disk}p2 " <<<"$dump") || fail "no partition 2: $dump"
[ "$(grep -c "^${disk}p" <<<"$dump")" = 2 ] || fail "not two partitions: $dump"
for want in 'type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B' 'name="ESP"' 'size= *131072,'; do
    grep -qiE "$want" <<<"$p1" || fail "partition 1 is not a 64 MiB EFI system partition ($want): $p1"
done
grep -qi 'type=E6D6D379-F507-44C2-A23C-238F2A3DF928' <<<"$p2" ||
    fail "partition 2 is not Linux LVM: $p2"
log "ok: GPT with ${disk}p1 (EFI system, 64 MiB, ESP) and ${disk}p2 (Linux LVM)"

# Filesystems and volumes.
[ "$(blkid -p -s TYPE -o value "${disk}p1")" = vfat ] || fail "${disk}p1 is not FAT"
esp_uuid=$(blkid -p -s UUID -o value "${disk}p1")
fsck.vfat -n "${disk}p1" >/dev/null || fail "fsck.vfat ${disk}p1"
lvs=$(lvm lvs --noheadings --units m --nosuffix -o lv_name,lv_size "$vg" | tr -s ' ')
grep -qE '^ ?root 600\.00$' <<<"$lvs" || fail "no 600 MiB $vg/root: $lvs"
grep -qE '^ ?kcore [0-9.]+$' <<<"$lvs" || fail "no $vg/kcore: $lvs"
[ "$(lvm pvs --noheadings -o vg_name "${disk}p2" | tr -d ' ')" = "$vg" ] || fail "${disk}p2 is not in $vg"
[ "$(lvm vgs --noheadings -o vg_free --units m --nosuffix "$vg" | tr -d ' ')" = 0 ] ||
    fail "$vg has free space left (kcore should take 100%FREE)"
mounts=("$mnt:ext4:nixos" "$mnt/var/lib/kcore:ext4:kcore")
if grep -qw vfat /proc/filesystems; then
    mounts+=("$mnt/boot:vfat:ESP")
    boot="/boot"
else
    # This kernel has no vfat: install-to-disk must say so and leave /boot unmounted.
    grep -qF "cannot mount FAT on this kernel" <<<"$out" || fail "no vfat here, and install-to-disk did not say so: $out"
    ! findmnt --mountpoint "$mnt/boot" >/dev/null || fail "$mnt/boot is mounted"
    boot="/boot (no: this kernel has no vfat, and install-to-disk said so)"
fi
for m in "${mounts[@]}"; do
    IFS=: read -r dir fstype label <<<"$m"
    src=$(findmnt -n -o SOURCE --mountpoint "$dir") || fail "nothing mounted on $dir"
    [ "$(findmnt -n -o FSTYPE --mountpoint "$dir")" = "$fstype" ] || fail "$dir is not $fstype"
    [ "$(blkid -s LABEL -o value "$src")" = "$label" ] || fail "$dir ($src) is not labelled $label"
done
log "ok: FAT32 ESP; $vg with root (600 MiB) and kcore (the rest); ext4 nixos and kcore; mounted at /, /var/lib/kcore, $boot"

# The configuration.
etc=$mnt/etc/nixos
for f in flake.nix configuration.nix disks.nix kcore-node.nix hardware-configuration.nix; do
    [ -f "$etc/$f" ] || fail "$etc/$f was not written"
    nixi --parse "$etc/$f" >/dev/null || fail "$etc/$f does not parse"
done
cmp -s "$tmp/ca.crt" "$mnt/etc/kcore/ca.crt" || fail "/etc/kcore/ca.crt is not the CA given"
[ "$(stat -c %a "$mnt/etc/kcore/join-token")" = 600 ] || fail "/etc/kcore/join-token is not 0600"
cmp -s "$tmp/token" "$mnt/etc/kcore/join-token" || fail "/etc/kcore/join-token is not the token given"
cmp -s "$repo/flake.nix" "$mnt/etc/kcore/flake/flake.nix" || fail "kcore's flake was not copied to /etc/kcore/flake"
[ "$(stat -c %a "$mnt/var/lib/kcore")" = 711 ] || fail "/var/lib/kcore is not 0711"
flake=$(nixi --eval --strict --json -E "
    let f = import $etc/flake.nix;
        o = f.outputs { nixpkgs.lib.nixosSystem = a: a; kcore.nixosModules.default = \"kcore-module\"; };
    in [ f.inputs.kcore.url f.inputs.nixpkgs.follows (builtins.attrNames o.nixosConfigurations)
         o.nixosConfigurations.$host.system
         (map (m: if builtins.isPath m then baseNameOf m else m) o.nixosConfigurations.$host.modules) ]")
[ "$flake" = '["path:/etc/kcore/flake","kcore/nixpkgs",["'"$host"'"],"x86_64-linux",["kcore-module","configuration.nix"]]' ] ||
    fail "flake.nix: $flake"
conf=$(nixi --eval --strict --json -E "
    let c = import $etc/configuration.nix { }; in [ (map baseNameOf c.imports) c.system.stateVersion
      c.networking.bridges.br0.interfaces c.users.users.root.openssh.authorizedKeys.keys
      c.boot.loader.systemd-boot.enable ]")
[ "$conf" = '[["hardware-configuration.nix","disks.nix","kcore-node.nix"],"25.11",["enp3s0"],["'"$(cat "$tmp/key.pub")"'"],true]' ] ||
    fail "configuration.nix: $conf"
log "ok: $etc: flake.nix (nixosConfigurations.$host, kcore from path:/etc/kcore/flake), configuration.nix (imports, bridge, SSH key, systemd-boot); /etc/kcore: ca.crt, join-token (0600), flake/"

find_nixpkgs_lib "$repo"
if [ -z "$NIXPKGS_LIB" ]; then
    log "NOT EVALUATED: without nixpkgs' lib, disks.nix and kcore-node.nix were only parsed"
else
    got=$(nixi --eval --read-write-mode --strict --json -E "
        let lib = import $NIXPKGS_LIB;
            c = (import $repo/nixos/tests/eval.nix { inherit lib;
                  configuration.imports = [ $etc/disks.nix $etc/kcore-node.nix ]; }).config;
        in builtins.seq c.system.build.toplevel [
          c.fileSystems.\"/\".device c.fileSystems.\"/boot\".device c.fileSystems.\"/boot\".fsType
          c.fileSystems.\"/var/lib/kcore\".device c.systemd.services.kcore-agent.serviceConfig.ExecStart
          c.networking.firewall.allowedTCPPorts ]" 2>&1) || fail "evaluating the written configuration: $got"
    want_fs='"/dev/'$vg'/root","/dev/disk/by-uuid/'$esp_uuid'","vfat","/dev/'$vg'/kcore"'
    [[ $got == "[$want_fs,"* ]] || fail "written fileSystems: $got (expected $want_fs)"
    for want in " --join-token-file /etc/kcore/join-token " " --name $host " \
        " --controller 10.0.0.1:9090 " " --advertise node7.lan:9091 " " --ca-cert /etc/kcore/ca.crt " \
        ",[9091]]"; do
        grep -qF -- "$want" <<<"$got" || fail "the written node configuration lacks '$want': $got"
    done
    log "ok: disks.nix and kcore-node.nix evaluate with kcore's module: the ESP by UUID $esp_uuid, $vg/root, $vg/kcore; kcored node --name $host --controller 10.0.0.1:9090 --advertise node7.lan:9091, join token from /etc/kcore/join-token, port 9091 open"
fi
umount -R "$mnt"
for l in $(losetup -j "${disk}p2" -O NAME -n); do
    e2fsck -n -f "$l" >/dev/null 2>&1 || fail "e2fsck $l (an LV of $vg) reports errors"
done
log "ok: e2fsck finds both ext4 filesystems clean after unmounting"
log "NOT EXERCISED HERE: device-mapper activation of $vg (no device-mapper in this kernel), nixos-generate-config and nixos-install (no NixOS)"
