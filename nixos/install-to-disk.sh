#!/usr/bin/env bash
# install-to-disk: make a kcore node of this machine from the booted installer ISO.
#
# Partitions a disk (GPT: an EFI system partition and one LVM partition with volume group
# vg0 holding `root` and `kcore`, mounted at / and /var/lib/kcore), writes a flake-based
# NixOS configuration for this node into /mnt/etc/nixos (kcore's module, the controller,
# the cluster CA, the join token), runs nixos-install, and says what it did. --dry-run
# prints the plan and changes nothing; every destructive step asks first unless --yes.
set -euo pipefail

prog=install-to-disk
usage() {
    cat <<EOF
Usage: $prog --disk DEV --hostname NAME --controller HOST:PORT --ca-cert FILE
                       [--join-token TOKEN | --join-token-file FILE] [options]

Required:
  --disk DEV              the disk to erase and install on (e.g. /dev/nvme0n1)
  --hostname NAME         this node's host name and kcore node name ([a-z0-9][a-z0-9-]*)
  --controller HOST:PORT  the kcore controller's API address (its --listen)
  --ca-cert FILE          the cluster CA: a copy of the controller's pki/ca.crt
Join token (one-time, from \`kctl node join-token --ttl SECS\`; used at the first boot):
  --join-token TOKEN | --join-token-file FILE
Options:
  --advertise HOST:PORT   the address the controller dials this node at (default: the
                          host name and 9091; the controller must resolve it)
  --ssh-key FILE          authorized key(s) for root over SSH (sshd is enabled with it)
  --bridge-interface IF   put IF into a bridge br0 (DHCP on br0) for bridged guest networks
  --esp-size SIZE         EFI system partition (default 1G)
  --root-size SIZE        the root volume (default 32G)
  --kcore-size SIZE       the /var/lib/kcore volume: SIZE or N%FREE (default 100%FREE)
  --vg NAME               the volume group (default vg0)
  --kcore-flake REF       the node's flake input for kcore (default: path:/etc/kcore/flake,
                          a copy of the installer's kcore, see --kcore-source)
  --kcore-source DIR      kcore's source to copy to /etc/kcore/flake (default: the ISO's
                          /etc/kcore/flake)
  --state-version X.Y     system.stateVersion (default: this installer's NixOS release)
  --mnt DIR               where the new system is mounted (default /mnt)
  --dry-run               print the plan and stop: nothing is changed
  --yes                   do not ask before destructive steps
  --no-install            stop before nixos-install (the disk is made and mounted, the
                          configuration written)
  --limited-kernel        for tests on kernels without device-mapper (and maybe without
                          vfat), like kcore's CI machines: LVM is written as metadata only,
                          each volume is reached through a loop device over its extents,
                          and the ESP is left unmounted if FAT cannot be mounted (implies
                          --no-install)
EOF
}

die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}
say() { printf '%s: %s\n' "$prog" "$*" >&2; }

disk='' hostname='' controller='' ca_cert='' token='' token_file='' ssh_key='' bridge_if=''
advertise=''
esp_size=1G root_size=32G kcore_size=100%FREE vg=vg0 kcore_flake='' kcore_source=''
state_version='' mnt=/mnt dry_run=0 yes=0 no_install=0 no_dm=0
while [ $# -gt 0 ]; do
    opt=$1
    case $opt in
    --dry-run) dry_run=1 ;;
    --yes) yes=1 ;;
    --no-install) no_install=1 ;;
    --limited-kernel) no_dm=1 no_install=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    --*)
        [ $# -ge 2 ] || die "$opt needs a value"
        val=$2
        shift
        case $opt in
        --disk) disk=$val ;;
        --hostname) hostname=$val ;;
        --controller) controller=$val ;;
        --advertise) advertise=$val ;;
        --ca-cert) ca_cert=$val ;;
        --join-token) token=$val ;;
        --join-token-file) token_file=$val ;;
        --ssh-key) ssh_key=$val ;;
        --bridge-interface) bridge_if=$val ;;
        --esp-size) esp_size=$val ;;
        --root-size) root_size=$val ;;
        --kcore-size) kcore_size=$val ;;
        --vg) vg=$val ;;
        --kcore-flake) kcore_flake=$val ;;
        --kcore-source) kcore_source=$val ;;
        --state-version) state_version=$val ;;
        --mnt) mnt=$val ;;
        *) die "unknown option $opt (see --help)" ;;
        esac
        ;;
    *) die "unexpected argument $opt (see --help)" ;;
    esac
    shift
done

# --- checks, before anything is touched ------------------------------------------------

[ -n "$disk" ] || die "--disk is required (see --help)"
[ -n "$hostname" ] || die "--hostname is required"
[ -n "$controller" ] || die "--controller is required"
[ -n "$ca_cert" ] || die "--ca-cert is required"
[[ $hostname =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] ||
    die "--hostname $hostname: use [a-z0-9][a-z0-9-]{0,62} (a kcore node name)"
host_re='([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*'
# HOST:PORT as the module's option types take it (a DNS name, IPv4 or [IPv6]; port 1-65535).
check_host_port() {
    local opt=$1 val=$2 port
    [[ $val =~ ^($host_re|\[[0-9A-Fa-f:.]+\]):([0-9]+)$ ]] || die "$opt $val: give HOST:PORT (e.g. 10.0.0.1:9090)"
    port=${BASH_REMATCH[-1]}
    local host=${BASH_REMATCH[1]} octet
    # A name whose last label is all digits must be an IPv4 address.
    if [[ $host =~ (^|\.)[0-9]+$ ]]; then
        [[ $host =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "$opt $val: $host is not an IPv4 address"
        for octet in ${host//./ }; do
            if ! [[ $octet =~ ^(0|[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$ ]]; then
                die "$opt $val: $host is not an IPv4 address"
            fi
        done
    fi
    if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65535 ]; then
        die "$opt $val: the port must be 1-65535"
    fi
}
check_host_port --controller "$controller"
[ -z "$advertise" ] || check_host_port --advertise "$advertise"
[ -r "$ca_cert" ] || die "--ca-cert $ca_cert: cannot read it"
grep -q -- '-----BEGIN CERTIFICATE-----' "$ca_cert" ||
    die "--ca-cert $ca_cert: not a PEM certificate"
if [ -n "$token" ] && [ -n "$token_file" ]; then
    die "give --join-token or --join-token-file, not both"
fi
if [ -n "$token_file" ]; then
    [ -r "$token_file" ] || die "--join-token-file $token_file: cannot read it"
    IFS=$' \t\r\n' read -r token <"$token_file" || true
    [ -n "$token" ] || die "--join-token-file $token_file is empty"
fi
[ -n "$token" ] ||
    say "no join token: the node will not join until one is in /etc/kcore/join-token"
[[ -z $token || $token =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "the join token has unexpected characters"
ssh_keys=()
if [ -n "$ssh_key" ]; then
    [ -r "$ssh_key" ] || die "--ssh-key $ssh_key: cannot read it"
    while IFS= read -r key; do
        [[ $key =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $key =~ ^[A-Za-z0-9@._+/=:,\ -]+$ ]] ||
            die "--ssh-key $ssh_key: unexpected characters in a key"
        ssh_keys+=("$key")
    done <"$ssh_key"
    [ ${#ssh_keys[@]} -gt 0 ] || die "--ssh-key $ssh_key holds no key"
fi
[ -z "$bridge_if" ] || [[ $bridge_if =~ ^[A-Za-z0-9_.-]{1,15}$ ]] ||
    die "--bridge-interface $bridge_if: not an interface name"
size_re='^[1-9][0-9]*[KMGT]$'
[[ $esp_size =~ $size_re ]] || die "--esp-size $esp_size: give e.g. 1G"
[[ $root_size =~ $size_re ]] || die "--root-size $root_size: give e.g. 32G"
[[ $kcore_size =~ $size_re || $kcore_size =~ ^([1-9][0-9]?|100)%FREE$ ]] ||
    die "--kcore-size $kcore_size: give e.g. 200G or 100%FREE"
[[ $vg =~ ^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$ ]] || die "--vg $vg: not a volume group name"
if [ -n "$kcore_flake" ] && [ -n "$kcore_source" ]; then
    die "give --kcore-flake or --kcore-source, not both"
fi
if [ -z "$kcore_flake" ]; then
    kcore_flake=path:/etc/kcore/flake
    kcore_source=${kcore_source:-/etc/kcore/flake}
    [ -e "$kcore_source/flake.nix" ] ||
        die "no kcore flake at $kcore_source (not on the installer ISO?): give --kcore-source DIR or --kcore-flake REF"
fi
[[ $kcore_flake =~ ^[A-Za-z0-9+:/._?=\&~@-]+$ ]] || die "--kcore-flake $kcore_flake: unexpected characters"
if [ -z "$state_version" ]; then
    state_version=$(nixos-version 2>/dev/null | grep -oE '^[0-9]+\.[0-9]+' || true)
    state_version=${state_version:-25.11}
fi
[[ $state_version =~ ^[0-9]{2}\.[0-9]{2}$ ]] || die "--state-version $state_version: give e.g. 25.11"

[ -b "$disk" ] || die "--disk $disk: not a block device"
[ "$(id -u)" = 0 ] || [ "$dry_run" = 1 ] || die "run as root"

# Partition device names: /dev/sda -> /dev/sda1, /dev/nvme0n1 and /dev/loop0 -> ...p1.
part() {
    case $disk in
    *[0-9]) printf '%sp%s' "$disk" "$1" ;;
    *) printf '%s%s' "$disk" "$1" ;;
    esac
}
esp=$(part 1)
pv=$(part 2)
disk_bytes=$(blockdev --getsize64 "$disk" 2>/dev/null || echo "?")
# The disk's partitions now (from sysfs: a name prefix would also match /dev/loop10 for
# /dev/loop1).
old_parts() {
    local p
    for p in /sys/class/block/"${disk##*/}"/*/partition; do
        [ -e "$p" ] || continue
        p=${p%/partition}
        printf '/dev/%s\n' "${p##*/}"
    done
}
extra_files=
[ -z "$token" ] || extra_files=", join-token (0600)"

plan() {
    cat <<EOF
Plan for $disk ($disk_bytes bytes): everything on it is erased.
  1. GPT: $esp  EFI system partition, $esp_size, FAT32 "ESP"  -> /boot
          $pv  LVM physical volume, the rest
  2. LVM: volume group $vg; $vg/root $root_size (ext4 "nixos") -> /
                           $vg/kcore $kcore_size (ext4 "kcore") -> /var/lib/kcore
  3. mounted under $mnt
  4. $mnt/etc/nixos: flake.nix (nixosConfigurations.$hostname; kcore from $kcore_flake),
     configuration.nix, disks.nix, kcore-node.nix (controller $controller),
     hardware-configuration.nix; $mnt/etc/kcore/ca.crt$extra_files
EOF
    if [ "$no_install" = 1 ]; then
        echo "  5. stop before nixos-install"
    else
        echo "  5. nixos-install --flake $mnt/etc/nixos#$hostname --root $mnt"
    fi
}

if [ "$dry_run" = 1 ]; then
    plan
    echo "(dry run: nothing changed)"
    exit 0
fi

need() {
    command -v "$1" >/dev/null || die "$1 not found: install $2"
}
need sfdisk "util-linux (fdisk on Debian)"
need wipefs util-linux
need partx util-linux
need blkid util-linux
need mkfs.vfat dosfstools
need mkfs.ext4 e2fsprogs
need lvm lvm2
[ "$no_dm" = 0 ] || need losetup "util-linux (mount on Debian)"
[ "$no_install" = 1 ] || need nixos-install "nixos-install-tools (it is on the installer ISO)"

mounted=$(findmnt -rn -o SOURCE || true)
for d in "$disk" $(old_parts); do
    ! grep -qxF "$d" <<<"$mounted" || die "$d is mounted: unmount it first"
done

ask() {
    [ "$yes" = 1 ] && return 0
    local reply
    printf '%s: %s [y/N] ' "$prog" "$1" >&2
    read -r reply || true
    case $reply in
    y | Y | yes) return 0 ;;
    *) die "stopped: nothing more was changed" ;;
    esac
}

lvm_opts=()
[ "$no_dm" = 0 ] || lvm_opts=(--driverloaded n)
export LVM_SUPPRESS_FD_WARNINGS=1
lvmq() {
    if [ "$no_dm" = 0 ]; then
        lvm "$1" "${@:2}"
    else
        # Metadata only: leave out the warnings that say just that.
        lvm "$1" "${lvm_opts[@]}" "${@:2}" 2> >(grep -vE 'WARNING: (Activation disabled|This metadata update is NOT backed up|Skipping zeroing|Logical volume .* not zeroed)' >&2)
    fi
}

plan
done_steps=()

# --- 1. partitions ----------------------------------------------------------------------

# Volume groups on this disk now, and whether $vg lives elsewhere.
ours=$(for p in "$disk" $(old_parts); do lvmq pvs --noheadings -o vg_name "$p" 2>/dev/null || true; done | tr -d ' ' | sort -u | grep -v '^$' || true)
if lvmq vgs "$vg" >/dev/null 2>&1 && ! grep -qxF "$vg" <<<"$ours"; then
    die "a volume group $vg already exists on another disk: give --vg NAME"
fi
ask "Erase $disk and partition it (GPT: ESP + LVM)?"
for old in $ours; do
    say "removing the old volume group $old on $disk"
    [ "$no_dm" = 1 ] || lvm vgchange -an "$old" >/dev/null
    lvmq vgremove -ff -y "$old" >/dev/null
done
for p in $(old_parts); do
    wipefs -q -a "$p"
done
wipefs -q -a "$disk"
sfdisk -q --wipe always "$disk" <<EOF
label: gpt
size=$esp_size, type=uefi, name=ESP
type=lvm, name=kcore-lvm
EOF
partx -u "$disk" 2>/dev/null || true
if command -v udevadm >/dev/null; then
    udevadm settle 2>/dev/null || true
fi
for _ in $(seq 50); do
    [ -b "$esp" ] && [ -b "$pv" ] && break
    sleep 0.1
done
if ! [ -b "$esp" ] || ! [ -b "$pv" ]; then
    die "the partitions $esp and $pv did not appear"
fi
done_steps+=("partitioned $disk: $esp (ESP, $esp_size), $pv (LVM)")

# --- 2. filesystems and LVM -------------------------------------------------------------

ask "Create FAT32 on $esp and LVM ($vg: root, kcore) on $pv?"
mkfs.vfat -F 32 -n ESP "$esp" >/dev/null
lvmq pvcreate -q -y -ff "$pv" >/dev/null
lvmq vgcreate -q "$vg" "$pv" >/dev/null
lvmq lvcreate -q -y -n root -L "$root_size" "$vg" >/dev/null
if [[ $kcore_size == *%FREE ]]; then
    lvmq lvcreate -q -y -n kcore -l "$kcore_size" "$vg" >/dev/null
else
    lvmq lvcreate -q -y -n kcore -L "$kcore_size" "$vg" >/dev/null
fi
done_steps+=("made FAT32 on $esp and volume group $vg with root ($root_size) and kcore ($kcore_size)")

# The block device of a logical volume. Without device-mapper (tests): a loop device over
# the volume's extents on the PV, which is what device-mapper's linear target maps.
lv_dev() {
    local lv=$1
    if [ "$no_dm" = 0 ]; then
        for _ in $(seq 50); do
            [ -b "/dev/$vg/$lv" ] && break
            sleep 0.1
        done
        [ -b "/dev/$vg/$lv" ] || die "/dev/$vg/$lv did not appear"
        printf '/dev/%s/%s' "$vg" "$lv"
        return
    fi
    local segs range first last ext pe_start
    segs=$(lvmq lvs --noheadings -o seg_pe_ranges "$vg/$lv" | tr -d ' ')
    [ "$(printf '%s\n' "$segs" | wc -l)" = 1 ] || die "$vg/$lv has several segments"
    range=${segs##*:}
    first=${range%-*}
    last=${range#*-}
    ext=$(lvmq vgs --noheadings --units b --nosuffix -o vg_extent_size "$vg" | tr -d ' ')
    pe_start=$(lvmq pvs --noheadings --units b --nosuffix -o pe_start "$pv" | tr -d ' ')
    losetup -f --show -o $((pe_start + first * ext)) --sizelimit $(((last - first + 1) * ext)) "$pv"
}
root_dev=$(lv_dev root)
kcore_dev=$(lv_dev kcore)

mkfs.ext4 -q -F -L nixos "$root_dev"
mkfs.ext4 -q -F -L kcore "$kcore_dev"
esp_uuid=$(blkid -s UUID -o value "$esp")
[ -n "$esp_uuid" ] || die "no UUID on $esp"
done_steps+=("made ext4 on $vg/root (nixos) and $vg/kcore (kcore)")

mkdir -p "$mnt"
mount "$root_dev" "$mnt"
mkdir -p "$mnt/boot" "$mnt/var/lib/kcore"
boot_mount="$esp on $mnt/boot"
if [ "$no_dm" = 0 ]; then
    mount -o umask=0077 "$esp" "$mnt/boot"
elif ! mount -o umask=0077 "$esp" "$mnt/boot" 2>/dev/null; then
    say "cannot mount FAT on this kernel: $esp is not mounted on $mnt/boot"
    boot_mount="not $esp (this kernel cannot mount FAT)"
fi
mount "$kcore_dev" "$mnt/var/lib/kcore"
chmod 0711 "$mnt/var/lib/kcore"
done_steps+=("mounted $vg/root on $mnt, $vg/kcore on $mnt/var/lib/kcore, $boot_mount")

# --- 3. the configuration ---------------------------------------------------------------

etc=$mnt/etc/nixos
install -d -m 0755 "$etc" "$mnt/etc/kcore"
install -m 0644 "$ca_cert" "$mnt/etc/kcore/ca.crt"
if [ -n "$token" ]; then
    (
        umask 077
        printf '%s\n' "$token" >"$mnt/etc/kcore/join-token"
    )
fi
if [ -n "$kcore_source" ]; then
    mkdir -p "$mnt/etc/kcore/flake"
    cp -RL --no-preserve=mode "$kcore_source/." "$mnt/etc/kcore/flake/"
fi

cat >"$etc/flake.nix" <<EOF
# This node's NixOS configuration, written by install-to-disk.
# Apply a change: nixos-rebuild switch --flake /etc/nixos#$hostname
# New kcore: nix flake update kcore (after updating $kcore_flake), then switch.
{
  inputs.kcore.url = "$kcore_flake";
  inputs.nixpkgs.follows = "kcore/nixpkgs";

  outputs =
    { nixpkgs, kcore, ... }:
    {
      nixosConfigurations.$hostname = nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          kcore.nixosModules.default
          ./configuration.nix
        ];
      };
    };
}
EOF

cat >"$etc/disks.nix" <<EOF
# The disk install-to-disk made: $disk, GPT with an EFI system partition and LVM ($vg).
{
  fileSystems."/" = {
    device = "/dev/$vg/root";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-uuid/$esp_uuid";
    fsType = "vfat";
    options = [ "umask=0077" ];
  };
  fileSystems."/var/lib/kcore" = {
    device = "/dev/$vg/kcore";
    fsType = "ext4";
  };
}
EOF

{
    cat <<EOF
# kcore on this node, written by install-to-disk.
{
  networking.hostName = "$hostname";
  services.kcore-agent = {
    enable = true;
    controllerAddr = "$controller";
    caCertFile = "/etc/kcore/ca.crt";
EOF
    if [ -n "$token" ]; then
        cat <<EOF
    # One-time: read at the first start only; delete the file once the node has joined.
    joinTokenFile = "/etc/kcore/join-token";
EOF
    fi
    if [ -n "$advertise" ]; then
        cat <<EOF
    advertise = "$advertise";
EOF
    fi
    cat <<EOF
    # The controller dials the node here.
    openFirewall = true;
  };
}
EOF
} >"$etc/kcore-node.nix"

{
    cat <<EOF
# This node's NixOS configuration (see flake.nix), written by install-to-disk.
{ ... }:
{
  imports = [
    ./hardware-configuration.nix
    ./disks.nix
    ./kcore-node.nix
  ];

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  nix.settings.experimental-features = [
    "nix-command"
    "flakes"
  ];
EOF
    if [ -n "$bridge_if" ]; then
        cat <<EOF

  # Guests on the LAN: kctl network create lan --mode bridge --bridge br0
  networking.bridges.br0.interfaces = [ "$bridge_if" ];
  networking.interfaces.br0.useDHCP = true;
EOF
    fi
    if [ ${#ssh_keys[@]} -gt 0 ]; then
        printf '\n  services.openssh.enable = true;\n'
        printf '  users.users.root.openssh.authorizedKeys.keys = [\n'
        printf '    "%s"\n' "${ssh_keys[@]}"
        printf '  ];\n'
    fi
    cat <<EOF

  system.stateVersion = "$state_version";
}
EOF
} >"$etc/configuration.nix"

if command -v nixos-generate-config >/dev/null; then
    nixos-generate-config --root "$mnt" --no-filesystems --show-hardware-config \
        >"$etc/hardware-configuration.nix"
    hw="hardware-configuration.nix (nixos-generate-config)"
else
    [ "$no_install" = 1 ] || die "nixos-generate-config not found (it is on the installer ISO)"
    cat >"$etc/hardware-configuration.nix" <<EOF
# Not generated: nixos-generate-config was not found where install-to-disk ran.
# Replace with: nixos-generate-config --root /mnt --no-filesystems --show-hardware-config
{ }
EOF
    hw="hardware-configuration.nix (a placeholder: nixos-generate-config not found)"
fi
[ -z "$kcore_source" ] || extra_files="$extra_files, flake/ (kcore's source)"
done_steps+=("wrote $etc: flake.nix, configuration.nix, disks.nix, kcore-node.nix, $hw; $mnt/etc/kcore: ca.crt$extra_files")

# --- 4. install -------------------------------------------------------------------------

if [ "$no_install" = 1 ]; then
    done_steps+=("stopped before nixos-install; to finish: nixos-install --flake $etc#$hostname --root $mnt")
else
    ask "Run nixos-install for $hostname on $mnt?"
    install_opts=()
    [ -z "$ssh_key" ] || install_opts=(--no-root-passwd)
    nixos-install --flake "$etc#$hostname" --root "$mnt" "${install_opts[@]}"
    done_steps+=("installed NixOS with kcore: reboot, and the node joins $controller at its first start")
fi

echo
echo "$prog: done:"
for s in "${done_steps[@]}"; do
    echo "  - $s"
done
