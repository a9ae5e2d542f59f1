#!/bin/sh
# /init of the nested-KVM rig (see build-kvm-rig.sh): loads kvm-amd, says which KVM it got, runs
# guestmem's KVM tests (every dist/kvm test file but the host-side rig.test.js) with
# GUESTMEM_KVM_RIG=1 and the TAP reporter, and powers off. Lines starting with "GUESTMEM-RIG:"
# are for src/kvm/test-support/rig.ts; the TAP output lies between the begin and end lines.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "GUESTMEM-RIG: insmod $m failed"; done

param() { cat "/sys/module/$1/parameters/$2" 2>/dev/null || echo '?'; }
module=none
[ -d /sys/module/kvm_amd ] && module=kvm_amd
dev=no
[ -c /dev/kvm ] && dev=yes
cpu=$(grep -m 1 '^model name' /proc/cpuinfo | sed 's/.*: //' | tr ' ' '_')
svm=no
grep -q -m 1 '^flags.* svm' /proc/cpuinfo && svm=yes
echo "GUESTMEM-RIG: kvm kernel=$(uname -r) module=$module dev_kvm=$dev nested=$(param kvm_amd nested) npt=$(param kvm_amd npt) tdp_mmu=$(param kvm tdp_mmu) cpu=$cpu cpus=$(grep -c ^processor /proc/cpuinfo) svm=$svm"

cd /guestmem
files=$(find dist/kvm -name '*.test.js' ! -path dist/kvm/rig.test.js | sort)
echo "GUESTMEM-RIG: begin files=$(echo $files | wc -w)"
if [ -n "$files" ]; then
  # Guest code runs emulated twice over here: one test file at a time is as fast as several.
  GUESTMEM_KVM_RIG=1 HOME=/tmp node --test --test-reporter=tap --test-concurrency=1 $files
  code=$?
else
  echo "no test files in dist/kvm"
  code=1
fi
echo "GUESTMEM-RIG: end exit=$code"
reboot -f
