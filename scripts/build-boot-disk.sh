#!/usr/bin/env bash
# Build (and cache) a small BIOS-bootable disk image from the test guest: an MBR disk with
# one FAT16 partition holding the guest's kernel and initramfs and syslinux as the
# bootloader. A VM created with `--image` of it and no `--kernel` boots through SeaBIOS
# from its own disk. Built without root, loop devices or mounts (mtools, syslinux on the
# partition image, sfdisk, dd).
#
# Usage: scripts/build-boot-disk.sh [OUTDIR]   (default: /var/cache/kcore/boot-disk)
# Output: OUTDIR/bootdisk.qcow2; its kernel command line prints BOOTED-FROM-DISK. The test
# guest comes from $KCORE_GUEST_DIR (default /var/cache/kcore/test-guest).
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
out=${1:-/var/cache/kcore/boot-disk}
guest=${KCORE_GUEST_DIR:-/var/cache/kcore/test-guest}
bash scripts/build-test-guest.sh --offline "$guest" >/dev/null
mkdir -p "$out"
chmod 0755 "$out"
for tool in mkfs.vfat mcopy syslinux sfdisk qemu-img; do
    command -v "$tool" >/dev/null || {
        echo "build-boot-disk: $tool not found: apt-get install dosfstools mtools syslinux syslinux-common fdisk qemu-utils" >&2
        exit 1
    }
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || { echo "build-boot-disk: $mbr missing: apt-get install syslinux-common" >&2; exit 1; }

stamp="$(sha256sum "$0" "$guest/vmlinuz" "$guest/initrd.img" | sha256sum | cut -d' ' -f1)"
if [ -f "$out/bootdisk.qcow2" ] && [ "$(cat "$out/bootdisk.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out/bootdisk.qcow2"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=2048                      # partition start, sectors (1 MiB)
part_mib=60
part_sectors=$((part_mib * 2048))
part="$work/part.img"
truncate -s "${part_mib}M" "$part"
mkfs.vfat -F 16 -n KCOREBOOT -h "$start" "$part" >/dev/null
cat >"$work/syslinux.cfg" <<'CFG'
DEFAULT kcore
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL kcore
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 quiet panic=-1 kcore.marker=BOOTED-FROM-DISK
CFG
export MTOOLS_SKIP_CHECK=1
mcopy -i "$part" "$guest/vmlinuz" ::/vmlinuz
mcopy -i "$part" "$guest/initrd.img" ::/initrd.img
mcopy -i "$part" "$work/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$part"

disk="$work/disk.raw"
truncate -s "$(( (start + part_sectors) * 512 ))" "$disk"
printf 'label: dos\nstart=%d, size=%d, type=6, bootable\n' "$start" "$part_sectors" |
    sfdisk --quiet "$disk"
dd if="$mbr" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$disk" bs=512 seek="$start" conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$disk" "$work/bootdisk.qcow2"
install -m 0644 "$work/bootdisk.qcow2" "$out/bootdisk.qcow2"
echo "$stamp" >"$out/bootdisk.stamp"
echo "$out/bootdisk.qcow2"
