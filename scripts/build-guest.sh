#!/usr/bin/env bash
# Builds the small Linux guest of the vhost-user end-to-end test and benchmark, from Debian
# packages only (see guest-lib.sh): the cloud kernel, busybox-static, and the kernel's own virtio
# modules, in an initramfs whose /init loads virtio_pci and virtio_blk, runs the workload named
# on the kernel command line (guestmem.workload=pattern|fs|bench) on /dev/vda, prints its
# results between markers and powers off.
#
#   scripts/build-guest.sh [OUT]     (default .cache/guest; reuses a complete build)
#
# Output: OUT/vmlinuz, OUT/initrd.img, OUT/kernel-version. Exits 3 when the packages cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/guest-lib.sh
out=${1:-.cache/guest}
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ "$out/initrd.img" -nt scripts/build-guest.sh ] &&
  [ "$out/initrd.img" -nt scripts/guest-lib.sh ] && [ "$out/initrd.img" -nt scripts/guest-init.sh ]; then
  echo "guest already built in $out"
  exit 0
fi
guest_require_tools dpkg-deb cpio gzip
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
guest_unpack "$work"

root="$work/root"
mkdir -p "$root"/{dev,proc,sys,tmp,mnt}
guest_busybox "$root" sh mount umount insmod mkdir cat echo dd sha256sum head yes sleep ls dmesg grep wc \
  mke2fs mkfs.ext2 cp sync reboot date seq tr cmp rm mknod sed awk printf test stat
# Load order: virtio depends on virtio_ring; virtio_pci on both pci helper modules.
guest_modules "$root/modules" drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev \
  drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/block/virtio_blk
cp scripts/guest-init.sh "$root/init"
chmod +x "$root/init"

mkdir -p "$out"
cp "$vmlinuz" "$out/vmlinuz"
guest_cpio "$root" | gzip -9 > "$out/initrd.img"
echo "$kver" > "$out/kernel-version"
echo "guest built in $out: kernel $kver, initrd $(stat -c %s "$out/initrd.img") bytes"
