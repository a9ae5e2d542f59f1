/**
 * A tiny guest on a real KVM, with guestmem as its memory: a memory manager lays out 64 KiB of
 * RAM (mmap'd, with a dirty bitmap) and a device's MMIO page; the VM gets a memory slot per RAM
 * span; a hand-assembled real-mode guest prints a line through port 0x3f8, writes the device's
 * register (served by the manager's handler) and a byte of RAM (found in KVM's dirty log).
 *
 * Where /dev/kvm cannot be opened it says so, and how the tests still run a real KVM.
 *
 * Run: node build/examples/kvm-tiny-guest.js
 */
import { AtomicBitmap, GuestAddress, MemoryBacking, MemoryManager } from 'guestmem';
import { KvmError, KvmVm } from 'guestmem/kvm';
import { MmapBackend } from 'guestmem/mmap';

let vm: KvmVm;
try {
  vm = KvmVm.create();
} catch (e) {
  if (!(e instanceof KvmError && e.code === 'ERR_KVM_UNAVAILABLE')) throw e;
  console.log(`No usable /dev/kvm here (${e.errno}), so this example cannot run a guest.`);
  console.log('The KVM tests still run on a real KVM on this machine: `npm test` includes the nested-KVM rig test');
  console.log('(src/kvm/rig.test.ts), which boots Linux under QEMU with an emulated AMD CPU with SVM, loads kvm-amd');
  console.log('in it, and runs the tests of dist/kvm/ inside against that nested KVM (see the README, guestmem/kvm).');
  process.exit(0);
}

const manager = new MemoryManager();
const ram = new MemoryBacking(MmapBackend.anonymous(0x10000), { bitmap: new AtomicBitmap(0x10000) });
manager.addRam({ name: 'ram', start: GuestAddress(0), length: 0x10000, backing: ram });
const device: string[] = [];
manager.addMmio({
  name: 'device',
  start: GuestAddress(0xd000),
  length: 0x1000,
  priority: 300,
  handler: { read: () => 0, write: (offset, size, value) => device.push(`${size}-byte write of 0x${value.toString(16)} at offset ${offset}`) },
});

const memory = manager.memory();
// prettier-ignore
memory.writeSlice(GuestAddress(0x1000), Uint8Array.of(
  0xbe, 0x00, 0x11, //                   mov si, 0x1100        ; the message
  0xba, 0xf8, 0x03, //                   mov dx, 0x3f8         ; the serial port
  0xac, //                               lodsb                 ; al = next byte
  0x84, 0xc0, //                         test al, al
  0x74, 0x03, //                         jz +3                 ; the NUL ends it
  0xee, //                               out dx, al            ; a port I/O exit
  0xeb, 0xf8, //                         jmp -8                ; back to lodsb
  0xc7, 0x06, 0x00, 0xd0, 0x34, 0x12, // mov word [0xd000], 0x1234 ; an MMIO exit, to the manager
  0xc6, 0x06, 0x00, 0x30, 0x01, //       mov byte [0x3000], 1  ; RAM: lands, and is logged dirty
  0xf4, //                               hlt
));
memory.writeSlice(GuestAddress(0x1100), new TextEncoder().encode('Hello from a KVM guest\n\0'));

vm.attach(manager);
console.log('memory slots:');
for (const s of vm.slots()) console.log(`  slot ${s.id}: [0x${s.guest.toString(16)}, +0x${s.size.toString(16)}) ${s.name}${s.readOnly ? ' (read-only)' : ''}`);
vm.setDirtyLogging(true);
vm.harvestDirty(); // the set-up's own writes

const cpu = vm.createVcpu();
const sregs = cpu.getSpecialRegisters();
sregs.cs.base = 0n; // real mode, cs:ip = 0:0x1000
sregs.cs.selector = 0;
cpu.setSpecialRegisters(sregs);
cpu.setRegisters({ ...cpu.getRegisters(), rip: 0x1000n, rflags: 2n });

let serial = '';
for (;;) {
  const exit = cpu.run();
  if (exit.reason === 'io' && exit.port === 0x3f8 && exit.direction === 'out') serial += String.fromCharCode(...exit.data);
  else if (exit.reason === 'hlt') break;
  else throw new Error(`unexpected exit: ${JSON.stringify(exit)}`);
}
process.stdout.write(`the guest printed: ${serial}`);
console.log(`the device saw: ${device.join(', ')}`);
console.log(`dirty pages: ${vm.harvestDirty().map((r) => `[0x${r.start.toString(16)}, +0x${r.length.toString(16)})`).join(' ')}`);
console.log(`RAM at 0x3000: ${memory.readU8(GuestAddress(0x3000))}`);
vm.close();
