import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { MemoryManager } from '../manager/manager.js';
import { MmapBackend } from '../mmap/backend.js';
import { GuestMemoryRegion } from '../region/region.js';
import type { KvmVcpu } from './vcpu.js';
import type { KvmVm } from './vm.js';
import { IN_RIG, IS_PVM, LEGACY_TOUR, mmapBacking, PAGE_TABLES, STORE_TWICE, startLong, startReal, VGA_PEEK_POKE, vmOrSkip, writeIdentityPageTables } from './test-support/guests.js';
import { type Legacy, legacyLayout, pagesOf } from './test-support/layout.js';

const CODE = 0x1000;
const HIGH = 2 ** 32;

/** A VM on the legacy layout with `code` at 0x1000, or undefined (skipped). */
function boot(t: import('node:test').TestContext, code: Uint8Array, unmapped: 'ignore' | 'error' = 'ignore'): { vm: KvmVm; cpu: KvmVcpu; l: Legacy } | undefined {
  const vm = vmOrSkip(t);
  if (vm === undefined) return undefined;
  t.after(() => vm.close());
  const l = legacyLayout(unmapped);
  l.manager.memory().writeSlice(GuestAddress(CODE), code);
  vm.attach(l.manager);
  return { vm, cpu: vm.createVcpu(), l };
}

/** Runs until an exit that is not `out`, collecting the `out` bytes by port. */
function runToHalt(cpu: KvmVcpu): Map<number, number[]> {
  const outs = new Map<number, number[]>();
  for (let i = 0; i < 100; i++) {
    const exit = cpu.run();
    if (exit.reason === 'hlt') return outs;
    assert.equal(exit.reason, 'io', `unexpected exit ${JSON.stringify(exit)}`);
    if (exit.reason !== 'io') break;
    assert.equal(exit.direction, 'out');
    outs.set(exit.port, [...(outs.get(exit.port) ?? []), ...exit.data]);
  }
  assert.fail('the guest did not halt');
}

test('a real-mode guest reads the BIOS ROM, writes it (to onWrite), writes a device, reads unmapped memory', (t) => {
  const b = boot(t, LEGACY_TOUR);
  if (b === undefined) return;
  b.l.rom.chunks[0].views().u8[0x10] = 0xc3; // the ROM's byte 0x10, put there by "firmware"
  startReal(b.cpu, CODE);
  const outs = runToHalt(b.cpu);
  assert.deepEqual(outs.get(0x10), [0xc3], 'the ROM byte, read from its read-only slot');
  assert.deepEqual(b.l.romWrites, [{ op: 'write', offset: 0x20, size: 1, value: 0x99 }], 'the write exited and went to the ROM handler');
  assert.equal(b.l.rom.chunks[0].views().u8[0x20], 0, 'the ROM is unchanged');
  assert.deepEqual(b.l.device, [{ op: 'write', offset: 4, size: 2, value: 0xbeef }]);
  assert.deepEqual(outs.get(0x11), [0xff], "unmapped reads are all ones (the 'ignore' policy)");
});

test("under the manager's 'error' policy a guest read of unmapped memory fails the run", (t) => {
  const b = boot(t, LEGACY_TOUR, 'error');
  if (b === undefined) return;
  startReal(b.cpu, CODE);
  assert.deepEqual(b.cpu.run(), { reason: 'io', direction: 'out', port: 0x10, size: 1, count: 1, data: Uint8Array.of(0) });
  assert.throws(() => b.cpu.run(), { name: 'MemoryManagerError', code: 'ERR_UNMAPPED_ACCESS', address: 0xe0000 });
  assert.deepEqual(b.l.device, [{ op: 'write', offset: 4, size: 2, value: 0xbeef }], 'what came before the unmapped read ran');
});

test('the VGA window switched between RAM and MMIO while the VM lives: the guest sees each state', (t) => {
  const b = boot(t, VGA_PEEK_POKE);
  if (b === undefined) return;
  const vram = b.l.vram.backing?.chunks[0].views().u8 as Uint8Array;
  vram[0] = 0x42;
  const slotsWithRam = b.vm.slots();
  assert.ok(slotsWithRam.some((s) => s.guest === 0xa0000 && s.size === 0x20000 && !s.readOnly), 'VGA RAM is a slot');

  startReal(b.cpu, CODE);
  assert.deepEqual(runToHalt(b.cpu).get(0x13), [0x42], 'RAM: the guest reads what the RAM holds');
  assert.equal(vram[1], 0x77, 'RAM: the write landed in it');
  assert.deepEqual(b.l.vga, [], 'RAM: the MMIO handler saw nothing');

  b.l.manager.unmap(b.l.vram);
  assert.ok(!b.vm.slots().some((s) => s.guest === 0xa0000), 'MMIO: no slot there any more');
  vram[1] = 0;
  startReal(b.cpu, CODE);
  assert.deepEqual(runToHalt(b.cpu).get(0x13), [0x5a], 'MMIO: the guest reads what the handler returns');
  assert.deepEqual(b.l.vga, [
    { op: 'read', offset: 0, size: 1, value: 0x5a },
    { op: 'write', offset: 1, size: 1, value: 0x77 },
  ]);
  assert.equal(vram[1], 0, 'MMIO: the RAM was not written');

  b.l.manager.map(b.l.vram);
  startReal(b.cpu, CODE);
  assert.deepEqual(runToHalt(b.cpu).get(0x13), [0x42], 'RAM again');
  assert.equal(vram[1], 0x77);
  assert.equal(b.l.vga.length, 2);
  assert.deepEqual(b.vm.slots(), slotsWithRam, 'the same slots as before, ids reused');
});

/**
 * The guest's page tables are dirty in every round in the nested rig ({@link IN_RIG}); on a
 * host's /dev/kvm, with their accessed and dirty bits preset, never (measured on PVM). They are asserted apart
 * from the pages the guest and devices wrote.
 */
const TABLES_DIRTY_EACH_RUN = IN_RIG;
const TABLE_PAGES = [PAGE_TABLES, PAGE_TABLES + 0x1000, PAGE_TABLES + 0x2000, PAGE_TABLES + 0x3000];

test('a long-mode guest writes a pattern across two slots, one above 4 GiB; each round harvests exactly the pages the guest and devices wrote', (t) => {
  const b = boot(t, STORE_TWICE);
  if (b === undefined) return;
  const { vm, cpu, l } = b;
  writeIdentityPageTables(l.manager.memory());
  vm.setDirtyLogging(true);
  const round = (rdi: number, rsi: number, pattern: bigint) => {
    startLong(cpu, CODE);
    cpu.setRegisters({ ...cpu.getRegisters(), rax: pattern, rdi: BigInt(rdi), rsi: BigInt(rsi) });
    const exit = cpu.run();
    assert.equal(exit.reason, 'io');
    assert.equal(cpu.run().reason, 'hlt');
    const mem = l.manager.memory();
    assert.equal(mem.readU64LE(GuestAddress(rdi)), pattern);
    assert.equal(mem.readU64LE(GuestAddress(rsi)), pattern);
  };
  /** The harvest, with the page-table pages checked apart (see TABLES_DIRTY_EACH_RUN). */
  const harvest = (guestRan: boolean): number[] => {
    const pages = pagesOf(vm.harvestDirty());
    const tables = pages.filter((p) => TABLE_PAGES.includes(p));
    assert.deepEqual(tables, TABLES_DIRTY_EACH_RUN && guestRan ? TABLE_PAGES : [], 'page-table pages');
    return pages.filter((p) => !TABLE_PAGES.includes(p));
  };
  // Warm-up: the first run faults the code page in, which KVM may log as dirty (the rig's does).
  round(0x2000, HIGH + 0x2000, 1n);
  vm.harvestDirty();

  round(0x3000, HIGH + 0x1000, 0x1122334455667788n);
  l.manager.memory().writeU32LE(GuestAddress(0x5000), 7); // a device's DMA write
  assert.deepEqual(harvest(true), [0x3000, 0x5000, HIGH + 0x1000]);

  round(0x4000, HIGH, 0x99aabbccddeeff00n);
  assert.deepEqual(harvest(true), [0x4000, HIGH]);

  assert.deepEqual(harvest(false), [], 'nothing written, nothing dirty');

  // A slot removed and re-added keeps its dirty pages: the log is merged before it goes.
  round(0x6000, HIGH + 0x3000, 0x0102030405060708n);
  const high = l.manager.regions().find((r) => r.name === 'high');
  assert.ok(high);
  l.manager.unmap(high);
  l.manager.map(high);
  assert.deepEqual(harvest(true), [0x6000, HIGH + 0x3000]);
});

test('without a manager: port and MMIO exits in both directions carry their data', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  // RAM [0, 0x4000) only: 0x5000 has no slot, so the guest's accesses there exit as MMIO.
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), MmapBackend.anonymous(0x4000))]);
  // prettier-ignore
  mem.writeSlice(GuestAddress(CODE), Uint8Array.of(
    0xe4, 0x20, //                   in al, 0x20            ; port read: the VMM answers
    0xe6, 0x21, //                   out 0x21, al           ; report it back
    0xa0, 0x00, 0x50, //             mov al, [0x5000]       ; MMIO read: the VMM answers
    0xe6, 0x22, //                   out 0x22, al
    0xc7, 0x06, 0x00, 0x50, 0xef, 0xbe, // mov word [0x5000], 0xbeef ; MMIO write
    0xf4, //                         hlt
  ));
  vm.attach(mem);
  const cpu = vm.createVcpu();
  startReal(cpu, CODE);
  const port = cpu.run();
  assert.deepEqual({ ...port, data: [...(port as { data: Uint8Array }).data] }, { reason: 'io', direction: 'in', port: 0x20, size: 1, count: 1, data: [0] });
  (port as { data: Uint8Array }).data[0] = 0x5c;
  assert.deepEqual(cpu.run(), { reason: 'io', direction: 'out', port: 0x21, size: 1, count: 1, data: Uint8Array.of(0x5c) });
  const read = cpu.run();
  assert.deepEqual({ ...read, data: [...(read as { data: Uint8Array }).data] }, { reason: 'mmio', direction: 'read', address: 0x5000, size: 1, data: [0] });
  (read as { data: Uint8Array }).data[0] = 0x66;
  assert.deepEqual(cpu.run(), { reason: 'io', direction: 'out', port: 0x22, size: 1, count: 1, data: Uint8Array.of(0x66) });
  assert.deepEqual(cpu.run(), { reason: 'mmio', direction: 'write', address: 0x5000, size: 2, data: Uint8Array.of(0xef, 0xbe) });
  assert.deepEqual(cpu.run(), { reason: 'hlt' });
});

test('a triple fault (long mode, an empty IDT, int3) is a shutdown exit; under PVM an internal-error exit', (t) => {
  const b = boot(t, Uint8Array.of(0xcc)); // int3: #BP, then #GP, then #DF past the IDT's limit
  if (b === undefined) return;
  writeIdentityPageTables(b.l.manager.memory());
  startLong(b.cpu, CODE);
  b.cpu.setSpecialRegisters({ ...b.cpu.getSpecialRegisters(), idt: { base: 0n, limit: 0 } });
  // Measured: PVM's emulator gives up on the exception with KVM_INTERNAL_ERROR_EMULATION (1).
  assert.deepEqual(b.cpu.run(), IS_PVM ? { reason: 'internal-error', suberror: 1 } : { reason: 'shutdown' });
});

test("read-only RAM is a read-only slot: guest writes are routed below it, or refused where nothing lies below (the 'error' policy)", (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const manager = new MemoryManager({ unmapped: 'error' });
  const low = mmapBacking(0xc000);
  const shadow = mmapBacking(0x1000);
  manager.addRam({ name: 'low', start: GuestAddress(0), length: 0xc000, backing: low });
  manager.addRam({ name: 'shadow', start: GuestAddress(0x8000), length: 0x1000, backing: shadow, priority: 300, visibility: 'read-only' });
  manager.addRam({ name: 'lonely', start: GuestAddress(0xc000), length: 0x1000, backing: mmapBacking(0x1000), visibility: 'read-only' });
  shadow.chunks[0].views().u8[0] = 0xab;
  // prettier-ignore
  manager.memory().writeSlice(GuestAddress(CODE), Uint8Array.of(
    0xa0, 0x00, 0x80, //             mov al, [0x8000]       ; read the read-only RAM
    0xe6, 0x10, //                   out 0x10, al
    0xc6, 0x06, 0x01, 0x80, 0x5d, // mov byte [0x8001], 0x5d ; write it: lands in 'low' below
    0xc6, 0x06, 0x00, 0xc0, 0x77, // mov byte [0xc000], 0x77 ; read-only with nothing below
    0xf4, //                         hlt
  ));
  vm.attach(manager);
  assert.deepEqual(vm.slots().map((s) => [s.guest, s.size, s.readOnly, s.name]), [
    [0, 0x8000, false, 'ram region low'],
    [0x8000, 0x1000, true, 'ram region shadow'],
    [0x9000, 0x3000, false, 'ram region low'],
    [0xc000, 0x1000, true, 'ram region lonely'],
  ]);
  const cpu = vm.createVcpu();
  startReal(cpu, CODE);
  assert.deepEqual(cpu.run(), { reason: 'io', direction: 'out', port: 0x10, size: 1, count: 1, data: Uint8Array.of(0xab) });
  assert.throws(() => cpu.run(), { name: 'MemoryManagerError', code: 'ERR_READ_ONLY', address: 0xc000 });
  assert.equal(low.chunks[0].views().u8[0x8001], 0x5d, 'routed below');
  assert.equal(shadow.chunks[0].views().u8[1], 0, 'the read-only RAM is unchanged');
});
