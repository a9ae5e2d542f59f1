#!/bin/sh
# /init of the end-to-end guest (see build-guest.sh). Results go to the console as lines
# starting with "GUESTMEM:" so that the host can pick them out of the kernel's output.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "GUESTMEM: insmod $m failed"; done

workload=pattern
for arg in $(cat /proc/cmdline); do
  case "$arg" in guestmem.workload=*) workload=${arg#guestmem.workload=} ;; esac
done

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || { echo "GUESTMEM: no /dev/vda"; reboot -f; }
echo "GUESTMEM: start workload=$workload size=$(cat /sys/block/vda/size) queues=$(ls /sys/block/vda/mq | wc -l)"

# Nanoseconds of monotonic time (busybox date has no %N).
now_ns() { awk '/^now at/ { print $3; exit }' /proc/timer_list; }

# pattern BS COUNT SEEK: COUNT blocks of BS bytes of the text pattern, written at block SEEK with
# O_DIRECT, read back the same way, both hashed.
pattern() {
  bs=$1; count=$2; seek=$3; bytes=$(($1 * $2))
  yes "guestmem e2e pattern bs=$bs" | head -c $bytes > /tmp/p
  want=$(sha256sum /tmp/p | cut -c1-64)
  t0=$(now_ns)
  dd if=/tmp/p of=/dev/vda bs=$bs count=$count seek=$seek oflag=direct conv=notrunc 2>/dev/null || echo "GUESTMEM: dd write failed bs=$bs"
  t1=$(now_ns)
  dd if=/dev/vda of=/tmp/r bs=$bs count=$count skip=$seek iflag=direct 2>/dev/null || echo "GUESTMEM: dd read failed bs=$bs"
  t2=$(now_ns)
  got=$(sha256sum /tmp/r | cut -c1-64)
  rm -f /tmp/p /tmp/r
  echo "GUESTMEM: pattern bs=$bs bytes=$bytes offset=$(($bs * $seek)) write_ns=$((t1 - t0)) read_ns=$((t2 - t1)) want=$want got=$got"
}

# In a subshell: whatever goes wrong in it, the guest still powers off below.
(
case "$workload" in
  pattern)
    pattern 4096 1024 0            # 4 MiB at 0
    pattern 65536 256 128          # 16 MiB at 8 MiB
    pattern 1048576 32 32          # 32 MiB at 32 MiB
    ;;
  migrate)
    # For the live-migration test (src/vhost-user/migration.test.ts). 8 readers, each one dd
    # process whose single 64 KiB buffer is filled again and again by O_DIRECT reads of its own
    # 8 MiB of disk (read at most 2 MiB/s in all, through cgroup io.max): only the device's DMA
    # writes those pages. The host steers through the first disk block: "stop" (the readers are
    # stopped where they are), then, on the destination, "verify": each reader's buffer is hashed
    # page by page, with the disk offset it must hold (its fd position less one block).
    bs=65536; area=128
    cg=/sys/fs/cgroup
    { mount -t cgroup2 none $cg && echo +io > $cg/cgroup.subtree_control && mkdir $cg/readers &&
      echo "$(cat /sys/block/vda/dev) rbps=2097152" > $cg/readers/io.max; } || echo "GUESTMEM: migrate no io throttle"
    pids=
    for k in 0 1 2 3 4 5 6 7; do
      sh -c "echo \$\$ > $cg/readers/cgroup.procs; exec dd if=/dev/vda of=/dev/null bs=$bs iflag=direct skip=$((16 + k * area)) count=$area 2>/dev/null" &
      pids="$pids $!"
    done
    ctl() { dd if=/dev/vda bs=4096 count=1 iflag=direct 2>/dev/null | tr -dc a-z; }
    # The CPU keeps 1 MiB of RAM dirty (about 20 MiB/s), so that the migration cannot converge
    # before the host says "stop" even when the device's writes go unlogged (the negative control).
    sh -c 'while :; do dd if=/dev/zero of=/dirt bs=65536 count=16 conv=notrunc 2>/dev/null; sleep 0.05; done' &
    echo "GUESTMEM: migrate reading"
    while [ "$(ctl)" != stop ]; do sleep 0.05; done
    kill -STOP $pids
    # A reader stops once its read completes: wait for that, so that the last DMA of every buffer
    # happens before the switchover (a read the throttle still held would complete on the destination).
    for p in $pids; do
      while read -r _ _ state _ < /proc/$p/stat && [ "$state" != T ]; do sleep 0.02; done
    done
    echo "GUESTMEM: migrate stopped"
    while [ "$(ctl)" != verify ]; do sleep 0.05; done
    k=0
    for p in $pids; do
      addr=
      while read -r range perms rest; do
        start=$((0x${range%-*})); end=$((0x${range#*-}))
        [ "$perms" = rw-p ] && [ "$rest" = "00000000 00:00 0" ] && [ $((end - start)) -eq $bs ] && addr=$start
      done < /proc/$p/maps
      pos=$(awk '/^pos:/ { print $2 }' /proc/$p/fdinfo/0 2>/dev/null)
      if [ -z "$addr" ] || [ -z "$pos" ]; then echo "GUESTMEM: buf k=$k gone"; k=$((k + 1)); continue; fi
      sums=
      for i in $(seq 0 15); do
        sums="$sums $(dd if=/proc/$p/mem bs=4096 skip=$((addr / 4096 + i)) count=1 2>/dev/null | sha256sum | cut -c1-16)"
      done
      echo "GUESTMEM: buf k=$k offset=$((pos - bs)) pages=$(echo $sums | tr ' ' ,)"
      k=$((k + 1))
    done
    kill -KILL $pids
    ;;
  bench)
    for run in 1 2 3; do
      pattern 4096 2048 0          # 8 MiB
      pattern 65536 512 128        # 32 MiB at 8 MiB
      pattern 1048576 32 64        # 32 MiB at 64 MiB (tmpfs holds it twice)
    done
    ;;
  fs)
    mke2fs -q /dev/vda >/dev/null 2>&1 || mkfs.ext2 /dev/vda >/dev/null || echo "GUESTMEM: mkfs failed"
    mount -t ext2 /dev/vda /mnt || echo "GUESTMEM: mount failed"
    mkdir -p /mnt/d
    for n in 1 2 3 4 5 6 7 8; do
      yes "guestmem fs file $n" | head -c $((n * 300000)) > /mnt/d/f$n
    done
    sync
    sums=$(cd /mnt/d && sha256sum f* | cut -c1-64 | tr '\n' ' ')
    umount /mnt
    mount -t ext2 /dev/vda /mnt || echo "GUESTMEM: remount failed"
    again=$(cd /mnt/d && sha256sum f* | cut -c1-64 | tr '\n' ' ')
    umount /mnt
    if [ "$sums" = "$again" ]; then same=yes; else same=no; fi
    echo "GUESTMEM: fs files=$(echo $sums | wc -w) same_after_remount=$same"
    echo "GUESTMEM: fs sums $again"
    ;;
esac
)

# I/Os completed on /dev/vda since boot: reads, merges, sectors, ticks, then the same for writes.
echo "GUESTMEM: stat $(cat /sys/block/vda/stat)"
errors=$(dmesg | grep -ci -e 'I/O error' -e 'blk_update_request' -e 'EXT[24]-fs error' -e 'Buffer I/O')
echo "GUESTMEM: done errors=$errors"
reboot -f
