#!/usr/bin/env bash
# Builds the nested-KVM rig: a Linux guest for QEMU (TCG, an AMD CPU with SVM) that loads the
# kernel's own kvm-amd module, so that /dev/kvm inside it is a real KVM on any machine, and
# runs guestmem's KVM tests there with this machine's Node (see src/kvm/rig.test.ts and
# scripts/kvm-rig-init.sh).
#
#   scripts/build-kvm-rig.sh [OUT]     (default .cache/kvm-rig)
#
# Output: OUT/vmlinuz, OUT/rig.cpio (base.cpio + package.cpio: Linux concatenates initramfs
# archives), OUT/kernel-version.
#   base.cpio: busybox, irqbypass/kvm/kvm-amd, the node binary and the libraries ldd lists, /init;
#              rebuilt when a script or node changes.
#   package.cpio: the built package (dist/, package.json, the addon, fast-check for the property
#              tests); rebuilt whenever any of it is newer, so the rig always runs the current build.
# Exits 3 when the packages cannot be had (the rig test then skips); needs `npm run build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/guest-lib.sh
out=${1:-.cache/kvm-rig}
node_bin=$(readlink -f "$(command -v node)")
addon=native/build/Release/guestmem.node
[ -f dist/index.js ] && [ -f "$addon" ] || { echo "build-kvm-rig: build the package first (npm ci / npm run build)" >&2; exit 1; }
mkdir -p "$out"

# Only the test's own dependencies that are present (fast-check and what it needs).
deps=()
for d in node_modules/fast-check node_modules/pure-rand; do [ -d "$d" ] && deps+=("$d"); done

# copy_libs ROOT FILE: the shared libraries ldd lists for FILE, at the same paths under ROOT (where
# the dynamic loader looks for them).
copy_libs() {
  local f
  for f in $(ldd "$2" | grep -o '/[^ ]*'); do
    mkdir -p "$1$(dirname "$f")"
    cp -L "$f" "$1$f"
  done
}

base_key="$node_bin $(stat -c %Y "$node_bin") $(node --version)"
if [ -f "$out/base.cpio" ] && [ -f "$out/vmlinuz" ] && [ "$(cat "$out/base.key" 2>/dev/null)" = "$base_key" ] &&
  [ "$out/base.cpio" -nt scripts/build-kvm-rig.sh ] && [ "$out/base.cpio" -nt scripts/guest-lib.sh ] &&
  [ "$out/base.cpio" -nt scripts/kvm-rig-init.sh ]; then
  :
else
  guest_require_tools dpkg-deb cpio ldd
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  guest_unpack "$work"
  root="$work/root"
  mkdir -p "$root"/{dev,proc,sys,tmp}
  guest_busybox "$root" sh mount insmod cat echo reboot ls grep find sort tr uname wc date sleep sed dmesg tail
  guest_modules "$root/modules" virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd
  mkdir -p "$root$(dirname "$node_bin")"
  cp "$node_bin" "$root$node_bin"
  copy_libs "$root" "$node_bin"
  [ -e "$root/bin/node" ] || ln -s "$node_bin" "$root/bin/node"
  cp scripts/kvm-rig-init.sh "$root/init"
  chmod +x "$root/init"
  guest_cpio "$root" > "$out/base.cpio.tmp"
  cp "$vmlinuz" "$out/vmlinuz"
  echo "$kver" > "$out/kernel-version"
  mv "$out/base.cpio.tmp" "$out/base.cpio"
  echo "$base_key" > "$out/base.key"
  rm -f "$out/package.cpio" # the combined archive is made again below
fi

if [ ! -f "$out/package.cpio" ] || [ ! -f "$out/rig.cpio" ] ||
  [ -n "$(find dist package.json "$addon" "${deps[@]}" -newer "$out/package.cpio" -print -quit)" ]; then
  pkg=$(mktemp -d)
  chmod 0755 "$pkg" # its mode becomes the mode of / in the guest: processes of other users must get in
  trap 'rm -rf "$pkg" ${work:+"$work"}' EXIT
  mkdir -p "$pkg/guestmem/native/build/Release" "$pkg/guestmem/node_modules"
  cp -r dist package.json "$pkg/guestmem/"
  cp "$addon" "$pkg/guestmem/$addon"
  copy_libs "$pkg" "$addon"
  for d in "${deps[@]}"; do cp -r "$d" "$pkg/guestmem/node_modules/"; done
  guest_cpio "$pkg" > "$out/package.cpio.tmp"
  mv "$out/package.cpio.tmp" "$out/package.cpio"
  cat "$out/base.cpio" "$out/package.cpio" > "$out/rig.cpio.tmp"
  mv "$out/rig.cpio.tmp" "$out/rig.cpio"
  echo "kvm rig built in $out: kernel $(cat "$out/kernel-version"), rig.cpio $(stat -c %s "$out/rig.cpio") bytes"
else
  echo "kvm rig already built in $out"
fi
