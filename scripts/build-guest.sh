#!/usr/bin/env bash
# Builds the small Linux guest of the vhost-user end-to-end test and benchmark, from Debian
# packages only: the cloud kernel (apt-get download + dpkg-deb -x; never installed, which would
# run initramfs hooks on this host), busybox-static, and the kernel's own virtio modules, in an
# initramfs whose /init loads virtio_pci and virtio_blk, runs the workload named on the kernel
# command line (guestmem.workload=pattern|fs|bench) on /dev/vda, prints its results between
# markers and powers off.
#
#   scripts/build-guest.sh [OUT]     (default .cache/guest; reuses a complete build)
#
# Output: OUT/vmlinuz, OUT/initrd.img, OUT/kernel-version.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.cache/guest}
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ "$out/initrd.img" -nt scripts/build-guest.sh ] && [ "$out/initrd.img" -nt scripts/guest-init.sh ]; then
  echo "guest already built in $out"
  exit 0
fi
for tool in apt-get dpkg-deb cpio gzip; do
  command -v "$tool" >/dev/null || { echo "build-guest: $tool is missing" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work" # apt-get download runs as _apt

# The kernel package the cloud metapackage points at, and busybox-static.
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { echo "build-guest: no linux-image-cloud-amd64 in the apt sources (apt-get update?)" >&2; exit 1; }
(cd "$work" && apt-get download -q "$kpkg" busybox-static >/dev/null)
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
kver=$(ls "$work/kernel/lib/modules")

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
for applet in sh mount umount insmod mkdir cat echo dd sha256sum head yes sleep ls dmesg grep wc \
  mke2fs mkfs.ext2 cp sync reboot date seq tr cmp rm mknod sed awk printf test stat; do
  ln -sf busybox "$root/bin/$applet"
done
mods="$work/kernel/lib/modules/$kver/kernel/drivers"
# Load order: virtio depends on virtio_ring; virtio_pci on both pci helper modules.
order="virtio/virtio_ring virtio/virtio virtio/virtio_pci_legacy_dev virtio/virtio_pci_modern_dev virtio/virtio_pci block/virtio_blk"
for m in $order; do
  src="$mods/$m.ko"
  if [ -f "$src" ]; then cp "$src" "$root/modules/"
  elif [ -f "$src.xz" ]; then xz -dc "$src.xz" > "$root/modules/$(basename "$m").ko"
  else echo "build-guest: module $m not found in $kpkg" >&2; exit 1; fi
done
echo "$order" | tr ' ' '\n' | sed 's|.*/||' > "$root/modules/order"
cp scripts/guest-init.sh "$root/init"
chmod +x "$root/init"

mkdir -p "$out"
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"
(cd "$root" && find . | sort | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.img"
echo "$kver" > "$out/kernel-version"
echo "guest built in $out: kernel $kver, initrd $(stat -c %s "$out/initrd.img") bytes"
