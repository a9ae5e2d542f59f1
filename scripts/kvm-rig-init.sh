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

# Watchdog: a run that hangs says where (every task's state, kernel function and, for running or
# blocked ones, kernel stack) and powers off, instead of being killed silently by the host.
watchdog=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in guestmem.watchdog=*) watchdog=${arg#guestmem.watchdog=} ;; esac
done
if [ "$watchdog" -gt 0 ]; then
  (
    sleep "$watchdog"
    echo "GUESTMEM-RIG: watchdog: no end after ${watchdog} s"
    for t in /proc/[0-9]*/task/[0-9]*; do
      p=${t%/task/*}
      cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
      [ -n "$cmd" ] || continue # kernel threads have no command line
      [ "${t##*/}" = "${p#/proc/}" ] && echo "process ${p#/proc/}: $cmd"
      state=$(sed 's/.*) \(.\).*/\1/' "$t/stat" 2>/dev/null) || continue
      wchan=$(cat "$t/wchan" 2>/dev/null)
      echo "task ${t#/proc/} $(cat "$t/comm") state=$state wchan=$wchan"
      case "$state/$wchan" in
        S/futex_wait_queue|S/do_epoll_wait|S/do_wait|S/pipe_read|S/hrtimer_nanosleep) ;;
        *) sed 's/^/    /' "$t/stack" 2>/dev/null ;;
      esac
    done
    dmesg | tail -n 20
    reboot -f
  ) &
fi

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
