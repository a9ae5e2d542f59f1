# Shared pieces of the guest builders (build-guest.sh, build-kvm-rig.sh); source it from the
# repository root. Everything comes from Debian packages: the cloud kernel (apt-get download +
# dpkg-deb -x; never installed, which would run initramfs hooks on this host) and
# busybox-static, both kept in .cache/debs so that later builds need no network.

# Exit code of a builder when something it needs cannot be had on this machine (no apt sources,
# no kernel package): the tests that need the guest skip on it, and fail on any other.
GUEST_UNAVAILABLE=3

guest_unavailable() { echo "$1" >&2; exit "$GUEST_UNAVAILABLE"; }

guest_require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || guest_unavailable "$tool is missing"
  done
}

# guest_unpack WORK: unpacks the kernel package the cloud metapackage points at into WORK/kernel
# and busybox-static into WORK/busybox; sets kpkg (package name), kver (module directory name),
# kmods (WORK/kernel/lib/modules/$kver/kernel), vmlinuz (the kernel image), busybox_bin.
guest_unpack() {
  local work=$1 debs=.cache/debs
  mkdir -p "$debs"
  kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
  if [ -z "$kpkg" ]; then
    # No apt lists: a cached package still does.
    local cached
    cached=$(ls "$debs"/linux-image-*.deb 2>/dev/null | tail -n 1)
    [ -n "$cached" ] || guest_unavailable "no linux-image-cloud-amd64 in the apt sources (apt-get update?)"
    kpkg=$(basename "$cached" | cut -d_ -f1)
  fi
  local pkg
  for pkg in "$kpkg" busybox-static; do
    if ! ls "$debs/${pkg}"_*.deb >/dev/null 2>&1; then
      chmod 0777 "$work" # apt-get download runs as _apt
      command -v apt-get >/dev/null || guest_unavailable "apt-get is missing (and $pkg is not in $debs)"
      (cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1) || guest_unavailable "cannot download $pkg"
      mv "$work/${pkg}"_*.deb "$debs/"
    fi
  done
  dpkg-deb -x "$(ls "$debs/${kpkg}"_*.deb | tail -n 1)" "$work/kernel"
  dpkg-deb -x "$(ls "$debs"/busybox-static_*.deb | tail -n 1)" "$work/busybox"
  kver=$(ls "$work/kernel/lib/modules")
  kmods="$work/kernel/lib/modules/$kver/kernel"
  vmlinuz="$work/kernel/boot/vmlinuz-$kver"
  busybox_bin="$work/busybox/bin/busybox"
}

# guest_busybox ROOT APPLET...: busybox in ROOT/bin with a link per applet.
guest_busybox() {
  local root=$1 applet
  shift
  mkdir -p "$root/bin"
  cp "$busybox_bin" "$root/bin/busybox"
  for applet in "$@"; do ln -sf busybox "$root/bin/$applet"; done
}

# guest_modules DEST MODULE...: copies the kernel's modules (paths under kernel/, without .ko;
# .ko.xz unpacked) to DEST, and their load order to DEST/order.
guest_modules() {
  local dest=$1 m src
  shift
  mkdir -p "$dest"
  : > "$dest/order"
  for m in "$@"; do
    src="$kmods/$m.ko"
    if [ -f "$src" ]; then cp "$src" "$dest/"
    elif [ -f "$src.xz" ]; then xz -dc "$src.xz" > "$dest/$(basename "$m").ko"
    else echo "module $m not found in $kpkg" >&2; exit 1; fi
    basename "$m" >> "$dest/order"
  done
}

# guest_cpio DIR: a newc archive of DIR on stdout (files sorted, so that builds are stable).
guest_cpio() {
  (cd "$1" && find . | sort | cpio -o -H newc --quiet)
}
