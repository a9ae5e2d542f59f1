/**
 * Tiny hand-assembled x86 guests for the KVM tests, and the register set-ups that start them in
 * real or long mode without firmware. Every instruction has its bytes and its meaning.
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { type GuestAddress, GuestAddress as GA } from '../../address/address.js';
import { AtomicBitmap } from '../../bitmap/atomic-bitmap.js';
import type { Bytes } from '../../bytes/bytes.js';
import { MemoryBacking } from '../../manager/backing.js';
import { MmapBackend } from '../../mmap/backend.js';
import { KvmError } from '../errors.js';
import { kvm } from '../native.js';
import type { KvmVcpu } from '../vcpu.js';
import { KvmVm } from '../vm.js';

/** The reason every KVM test prints where it cannot run (the README quotes it). */
export function noKvmReason(errno: string): string {
  return `no usable /dev/kvm here (${errno}); the nested-KVM rig test runs these tests`;
}

/**
 * True inside the nested-KVM rig (`GUESTMEM_KVM_RIG=1`), where QEMU's emulated page walk writes a
 * paging guest's page tables every time the guest runs, so that KVM logs them dirty (measured in
 * the rig with tiny guests whose page tables had their A/D bits preset).
 */
export const IN_RIG = process.env.GUESTMEM_KVM_RIG === '1';

/**
 * True where /dev/kvm is PVM, the software KVM of some machines of this kind. Measured
 * differences from KVM proper (the rig's kvm-amd): PVM's emulator reports a triple fault as an
 * internal error, and PVM does not log pages the guest only reads after a slot deletion (KVM
 * zaps every mapping then, and logs the next fault of any page of a logged slot as dirty).
 */
export const IS_PVM = existsSync('/sys/module/kvm_pvm');

/** A new VM, or undefined after `t.skip(reason)` where /dev/kvm cannot be opened. */
export function vmOrSkip(t: TestContext): KvmVm | undefined {
  try {
    return KvmVm.create();
  } catch (e) {
    if (e instanceof KvmError && e.code === 'ERR_KVM_UNAVAILABLE') {
      t.skip(noKvmReason(e.errno ?? 'unknown'));
      return undefined;
    }
    throw e;
  }
}

/** A raw fd of /dev/kvm for tests of the addon itself, or undefined after `t.skip(reason)`. */
export function kvmFdOrSkip(t: TestContext): number | undefined {
  try {
    return kvm.kvmOpen();
  } catch (e) {
    t.skip(noKvmReason(String((e as { errno?: number }).errno ?? 'unknown')));
    return undefined;
  }
}

/** Mmap'd memory with a dirty bitmap (4 KiB pages), as a backing for a memory manager. */
export function mmapBacking(size: number): MemoryBacking {
  return new MemoryBacking(MmapBackend.anonymous(size), { bitmap: new AtomicBitmap(size) });
}

/** Starts `cpu` in real mode at `0:ip` with every data segment at `0`. */
export function startReal(cpu: KvmVcpu, ip: number): void {
  const s = cpu.getSpecialRegisters();
  for (const seg of [s.cs, s.ds, s.es, s.ss]) {
    seg.base = 0n;
    seg.selector = 0;
  }
  cpu.setSpecialRegisters(s);
  cpu.setRegisters({ ...cpu.getRegisters(), rip: BigInt(ip), rflags: 2n });
}

/** Where {@link writeIdentityPageTables} puts the tables: four pages from here. */
export const PAGE_TABLES = 0x8000;

/**
 * Identity-maps the first GiB and the GiB at 4 GiB with 2 MiB pages: PML4 at 0x8000, PDPT at
 * 0x9000, page directories at 0xa000 (0-1 GiB) and 0xb000 (4-5 GiB). Accessed and dirty bits
 * are set already, so that the guest's page walks write nothing (the dirty log stays exact).
 */
export function writeIdentityPageTables(mem: Bytes<GuestAddress>): void {
  const P = 0x1n, RW = 0x2n, A = 0x20n, D = 0x40n, PS = 0x80n;
  const entry = (addr: number, i: number, value: bigint) => mem.writeU64LE(GA(addr + 8 * i), value);
  entry(PAGE_TABLES, 0, BigInt(PAGE_TABLES + 0x1000) | P | RW | A);
  entry(PAGE_TABLES + 0x1000, 0, BigInt(PAGE_TABLES + 0x2000) | P | RW | A);
  entry(PAGE_TABLES + 0x1000, 4, BigInt(PAGE_TABLES + 0x3000) | P | RW | A);
  for (let i = 0; i < 512; i++) {
    entry(PAGE_TABLES + 0x2000, i, (BigInt(i) << 21n) | P | RW | A | D | PS);
    entry(PAGE_TABLES + 0x3000, i, ((4n << 30n) + (BigInt(i) << 21n)) | P | RW | A | D | PS);
  }
}

/** Starts `cpu` in 64-bit long mode at `rip`, paging through {@link writeIdentityPageTables}. */
export function startLong(cpu: KvmVcpu, rip: number): void {
  const s = cpu.getSpecialRegisters();
  const code = { base: 0n, limit: 0xffffffff, selector: 8, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
  const data = { ...code, selector: 16, type: 0x3, db: 1, l: 0 };
  s.cs = code;
  s.ds = { ...data };
  s.es = { ...data };
  s.fs = { ...data };
  s.gs = { ...data };
  s.ss = { ...data };
  s.cr3 = BigInt(PAGE_TABLES);
  s.cr4 = 0x20n; // PAE
  s.cr0 = 0x80000011n; // PG | ET | PE
  s.efer = 0x500n; // LME | LMA
  cpu.setSpecialRegisters(s);
  cpu.setRegisters({ ...cpu.getRegisters(), rip: BigInt(rip), rflags: 2n });
}

/**
 * Long mode: stores `rax` at `[rdi]` and at `[rsi]`, reports on port 0x12, halts. The test puts
 * the pattern and both addresses in the registers.
 */
export const STORE_TWICE = Uint8Array.of(
  0x48, 0x89, 0x07, // mov [rdi], rax
  0x48, 0x89, 0x06, // mov [rsi], rax
  0xe6, 0x12, //       out 0x12, al
  0xf4, //             hlt
);

/**
 * Real mode: the legacy tour. Reads the BIOS ROM, writes it, writes a device's MMIO, reads an
 * unmapped address, reporting what it read on ports 0x10 and 0x11.
 */
export const LEGACY_TOUR = Uint8Array.of(
  0xb8, 0x00, 0xf0, //             mov ax, 0xf000
  0x8e, 0xd8, //                   mov ds, ax            ; ds:0 = 0xf0000, the BIOS ROM
  0xa0, 0x10, 0x00, //             mov al, [0x0010]      ; read ROM byte 0xf0010
  0xe6, 0x10, //                   out 0x10, al          ; report it
  0xc6, 0x06, 0x20, 0x00, 0x99, // mov byte [0x0020], 0x99 ; write ROM byte 0xf0020
  0xb8, 0x00, 0xd0, //             mov ax, 0xd000
  0x8e, 0xd8, //                   mov ds, ax            ; ds:0 = 0xd0000, the device's MMIO
  0xc7, 0x06, 0x04, 0x00, 0xef, 0xbe, // mov word [0x0004], 0xbeef ; 2-byte MMIO write at 0xd0004
  0xb8, 0x00, 0xe0, //             mov ax, 0xe000
  0x8e, 0xd8, //                   mov ds, ax            ; ds:0 = 0xe0000, where nothing is
  0xa0, 0x00, 0x00, //             mov al, [0x0000]      ; read unmapped 0xe0000
  0xe6, 0x11, //                   out 0x11, al          ; report it
  0xf4, //                         hlt
);

/** Real mode: reads the VGA window's first byte (reported on port 0x13), writes 0x77 to its second. */
export const VGA_PEEK_POKE = Uint8Array.of(
  0xb8, 0x00, 0xa0, //             mov ax, 0xa000
  0x8e, 0xd8, //                   mov ds, ax            ; ds:0 = 0xa0000
  0xa0, 0x00, 0x00, //             mov al, [0x0000]      ; read 0xa0000
  0xe6, 0x13, //                   out 0x13, al          ; report it
  0xc6, 0x06, 0x01, 0x00, 0x77, // mov byte [0x0001], 0x77 ; write 0xa0001
  0xf4, //                         hlt
);

/**
 * Real mode: increments the dword at 0x3000 forever (the worker test's busy guest).
 */
export const COUNT_FOREVER = Uint8Array.of(
  0x66, 0xff, 0x06, 0x00, 0x30, // inc dword [0x3000]
  0xeb, 0xf9, //                   jmp -7 (back to the inc)
);

/** Real mode: `out 0x14, al` then `jmp` back to it: an exit per loop, for round trips. */
export const OUT_LOOP = Uint8Array.of(
  0xe6, 0x14, //                   out 0x14, al
  0xeb, 0xfc, //                   jmp -4 (back to the out)
);
