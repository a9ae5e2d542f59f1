import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GuestAddress } from '../address/address.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { WasmMemoryBackend } from '../backend/wasm.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { MemoryBacking } from '../manager/backing.js';
import { MemoryManager } from '../manager/manager.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { MmapBackend } from '../mmap/backend.js';
import { GuestMemoryRegion } from '../region/region.js';
import { newWasmMemory } from '../test-support/wasm.js';
import { KvmError } from './errors.js';
import { SlotTable, type SlotPlan } from './slots.js';
import { KvmVcpu } from './vcpu.js';
import { mmapBacking, noKvmReason, startReal, vmOrSkip } from './test-support/guests.js';
import { legacyLayout, pagesOf } from './test-support/layout.js';

const G = GuestAddress;
const HIGH = 2 ** 32;
const rows = (vm: { slots(): { id: number; guest: number; size: number; readOnly: boolean; name: string }[] }) =>
  vm.slots().map((s) => [s.id, s.guest, s.size, s.readOnly, s.name]);

test('a VM reports the KVM API version and the capabilities it uses', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  assert.equal(vm.apiVersion, 12);
  assert.ok(vm.maxSlots >= 32, `KVM_CAP_NR_MEMSLOTS ${vm.maxSlots}`);
  assert.equal(typeof vm.readOnlyMemory, 'boolean');
  assert.equal(typeof vm.manualDirtyLog, 'boolean');
  assert.deepEqual(vm.slots(), []);
});

test('where /dev/kvm cannot be opened, create throws ERR_KVM_UNAVAILABLE with the errno', (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root, to run a child as nobody (which may not open /dev/kvm)');
    return;
  }
  const entry = fileURLToPath(new URL('./index.js', import.meta.url));
  const script = `import(${JSON.stringify(entry)}).then(({ KvmVm }) => { try { KvmVm.create(); console.log('opened'); } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, ioctl: e.ioctl })); } });`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 20000 });
  assert.equal(child.status, 0, child.stderr);
  if (child.stdout.trim() === 'opened') {
    t.skip('nobody may open /dev/kvm on this machine');
    return;
  }
  assert.deepEqual(JSON.parse(child.stdout), { name: 'KvmError', code: 'ERR_KVM_UNAVAILABLE', errno: 'EACCES', ioctl: 'open' });
  assert.match(noKvmReason('EACCES'), /^no usable \/dev\/kvm here \(EACCES\); the nested-KVM rig test runs these tests$/);
});

test("attach(manager): one slot per RAM or ROM span at the span's address, ROM read-only, none for MMIO or unmapped space", (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const l = legacyLayout();
  vm.attach(l.manager);
  assert.deepEqual(rows(vm), [
    [0, 0, 0xa0000, false, 'ram region low'],
    [1, 0xa0000, 0x20000, false, 'ram region vram'],
    [2, 0xf0000, 0x10000, true, 'rom region bios'],
    [3, HIGH, 0x10000, false, 'ram region high'],
  ]);
});

test('layout changes reach KVM: only the slots that changed, ids reused, detach removes every slot', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const l = legacyLayout();
  vm.attach(l.manager);
  const before = rows(vm);
  l.manager.setVisibility(l.vram, 'read-only');
  assert.deepEqual(rows(vm), before.map((r) => (r[4] === 'ram region vram' ? [r[0], r[1], r[2], true, r[4]] : r)), 'read-only RAM is a read-only slot, same id');
  l.manager.unmap(l.vram);
  assert.deepEqual(rows(vm), before.filter((r) => r[4] !== 'ram region vram'));
  // A RAM region that splits 'low' in three: the old slot goes, three come, free ids first.
  const hole = l.manager.addRam({ name: 'hole', start: G(0x10000), length: 0x1000, backing: mmapBacking(0x1000), priority: 300 });
  assert.deepEqual(rows(vm), [
    [0, 0, 0x10000, false, 'ram region low'],
    [1, 0x10000, 0x1000, false, 'ram region hole'],
    [4, 0x11000, 0x8f000, false, 'ram region low'],
    [2, 0xf0000, 0x10000, true, 'rom region bios'],
    [3, HIGH, 0x10000, false, 'ram region high'],
  ]);
  l.manager.remove(hole);
  l.manager.map(l.vram);
  assert.deepEqual(rows(vm).map((r) => r.slice(1)), before.map((r) => r.slice(1)));
  vm.detach();
  assert.deepEqual(vm.slots(), []);
  l.manager.unmap(l.vram);
  assert.deepEqual(vm.slots(), [], 'a detached VM no longer follows the manager');
  vm.attach(l.manager);
  assert.equal(vm.slots().length, 3);
});

test('memory KVM cannot map is refused naming the region, before any slot is made, at attach and at a later change', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const mm = new MemoryManager();
  mm.addRam({ name: 'good', start: G(0), length: 0x10000, backing: mmapBacking(0x10000) });
  const heap = mm.addRam({ name: 'heapy', start: G(0x100000), length: 0x10000, backing: MemoryBacking.allocate(0x10000) });
  assert.throws(() => vm.attach(mm), (e: KvmError) => e instanceof KvmError && e.code === 'ERR_KVM_NOT_MAPPABLE' && e.region === 'ram region heapy' && /heap/.test(e.message));
  assert.deepEqual(vm.slots(), [], 'not even the mappable region got a slot');
  mm.remove(heap);
  vm.attach(mm);
  const slots = rows(vm);
  const view = mm.flatView();
  assert.throws(
    () => mm.addRam({ name: 'shared', start: G(0x200000), length: 0x10000, backing: MemoryBacking.allocate(0x10000, { shared: true }) }),
    (e: any) => e.code === 'ERR_CHANGE_REFUSED' && e.cause instanceof KvmError && e.cause.code === 'ERR_KVM_NOT_MAPPABLE' && e.cause.region === 'ram region shared',
  );
  assert.deepEqual(rows(vm), slots, 'KVM unchanged');
  assert.equal(mm.flatView(), view, 'the manager rolled the change back');
  assert.deepEqual(mm.regions().map((r) => r.name), ['good']);

  const vm2 = vmOrSkip(t) as NonNullable<ReturnType<typeof vmOrSkip>>;
  t.after(() => vm2.close());
  const wasm = new WasmMemoryBackend(newWasmMemory({ initial: 1 }));
  for (const backend of [heapBackend(0x10000), sharedBackend(0x10000), wasm]) {
    const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), MmapBackend.anonymous(0x10000)), new GuestMemoryRegion(G(0x100000), backend)]);
    assert.throws(() => vm2.attach(mem), { name: 'KvmError', code: 'ERR_KVM_NOT_MAPPABLE', region: 'region [0x100000, 0x110000)' });
    assert.deepEqual(vm2.slots(), []);
  }
});

test('spans that do not fill whole pages are refused with ERR_KVM_UNALIGNED', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const mm = new MemoryManager();
  mm.addRam({ name: 'ram', start: G(0), length: 0x10000, backing: mmapBacking(0x10000) });
  mm.addMmio({ name: 'uart', start: G(0x3f8), length: 8, priority: 300, handler: { read: () => 0, write: () => {} } });
  assert.throws(() => vm.attach(mm), { name: 'KvmError', code: 'ERR_KVM_UNALIGNED', region: 'ram region ram', address: 0, length: 0x3f8 });
  assert.deepEqual(vm.slots(), []);
});

test('the slot limit and the read-only capability are checked before anything changes', () => {
  const plan = (guest: number, readOnly = false): SlotPlan => ({ name: `r${guest}`, guest, size: 0x1000, backend: MmapBackend.anonymous(0x1000), offset: 0, readOnly, dirty: undefined });
  // No ioctl is reached: the checks come first (the fd is never used).
  const table = new SlotTable<number>({ vmFd: 2 ** 30, maxSlots: 1, readOnlyMem: false, manualDirtyLog: false });
  assert.throws(() => table.change([], new Map([[0, [plan(0), plan(0x1000)]]])), {
    name: 'KvmError',
    code: 'ERR_KVM_TOO_MANY_SLOTS',
    length: 2,
    expected: 1,
  });
  assert.throws(() => table.change([], new Map([[0, [plan(0, true)]]])), { name: 'KvmError', code: 'ERR_KVM_CAPABILITY', region: 'r0' });
  assert.equal(table.count, 0);
});

test('attach(guestMemory): one slot per region; the guest writes and guestmem writes are harvested together', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const region = (start: number, size: number, readOnly = false) =>
    new GuestMemoryRegion(G(start), MmapBackend.anonymous(size), { bitmap: new AtomicBitmap(size), readOnly });
  const mem = GuestMemory.fromRegions([region(0, 0x10000), region(0x20000, 0x1000, true)]);
  // Real mode: mov byte [0x3000], 1 ; hlt
  mem.writeSlice(G(0x1000), Uint8Array.of(0xc6, 0x06, 0x00, 0x30, 0x01, 0xf4));
  vm.attach(mem);
  assert.deepEqual(rows(vm), [
    [0, 0, 0x10000, false, 'region [0x0, 0x10000)'],
    [1, 0x20000, 0x1000, true, 'region [0x20000, 0x21000)'],
  ]);
  assert.throws(() => vm.attach(mem), { name: 'KvmError', code: 'ERR_KVM_ATTACHED' });
  assert.throws(() => vm.harvestDirty(), { name: 'KvmError', code: 'ERR_KVM_NOT_TRACKED' });
  vm.setDirtyLogging(true);
  assert.ok(vm.slots().every((s) => s.logging));
  const cpu = vm.createVcpu();
  // Warm-up: the first run faults the code page in, which KVM may log as dirty (the rig's does).
  startReal(cpu, 0x1000);
  assert.deepEqual(cpu.run(), { reason: 'hlt' });
  vm.harvestDirty();
  mem.writeU8(G(0x3000), 0);
  startReal(cpu, 0x1000);
  assert.deepEqual(cpu.run(), { reason: 'hlt' });
  mem.writeU8(G(0x7010), 5);
  assert.deepEqual(pagesOf(vm.harvestDirty()), [0x3000, 0x7000]);
  assert.equal(mem.readU8(G(0x3000)), 1);
  // Turning logging off merges what KVM logged first: the guest's last write is not lost.
  startReal(cpu, 0x1000);
  assert.deepEqual(cpu.run(), { reason: 'hlt' });
  vm.setDirtyLogging(false);
  assert.ok(vm.slots().every((s) => !s.logging));
  assert.deepEqual(pagesOf(mem.harvestDirty()), [0x3000]);
  assert.throws(() => vm.harvestDirty(), { name: 'KvmError', code: 'ERR_KVM_NOT_TRACKED' });
  vm.setDirtyLogging(true);
  vm.detach();
  assert.throws(() => vm.harvestDirty(), { name: 'KvmError', code: 'ERR_KVM_ATTACHED' });
});

test('dirty logging needs an AtomicBitmap behind every slot', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const mm = new MemoryManager();
  mm.addRam({ name: 'untracked', start: G(0), length: 0x10000, backing: new MemoryBacking(MmapBackend.anonymous(0x10000)) });
  vm.attach(mm);
  assert.throws(() => vm.setDirtyLogging(true), { name: 'KvmError', code: 'ERR_KVM_NOT_TRACKED', region: 'ram region untracked' });
  assert.ok(vm.slots().every((s) => !s.logging));
});

test('vCPUs: registers round-trip, a failed ioctl is ERR_KVM_IOCTL with its name and errno, closed things say so', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const cpu = vm.createVcpu();
  assert.equal(cpu.index, 0);
  const regs = { ...cpu.getRegisters(), rax: 0xfedcba9876543210n, r15: 7n, rip: 0x1234n, rflags: 2n };
  cpu.setRegisters(regs);
  assert.deepEqual(cpu.getRegisters(), regs);
  const s = cpu.getSpecialRegisters();
  s.cs.base = 0x10000n;
  s.cs.selector = 0x1000;
  s.gdt = { base: 0x500n, limit: 0x17 };
  cpu.setSpecialRegisters(s);
  const back = cpu.getSpecialRegisters();
  assert.equal(back.cs.base, 0x10000n);
  assert.equal(back.cs.selector, 0x1000);
  assert.deepEqual(back.gdt, { base: 0x500n, limit: 0x17 });

  assert.throws(() => vm.createVcpu(0), { name: 'KvmError', code: 'ERR_KVM_IOCTL', ioctl: 'KVM_CREATE_VCPU', errno: 'EEXIST' });
  assert.throws(() => vm.attach(42 as never), { name: 'KvmError', code: 'ERR_KVM_INVALID_ARG' });
  assert.throws(() => KvmVcpu.fromShared({} as never), { name: 'KvmError', code: 'ERR_KVM_INVALID_ARG' });

  cpu.close();
  assert.deepEqual(cpu.run(), { reason: 'closed' });
  assert.throws(() => cpu.getRegisters(), { name: 'KvmError', code: 'ERR_KVM_CLOSED' });
  vm.close();
  vm.close();
  assert.throws(() => vm.createVcpu(), { name: 'KvmError', code: 'ERR_KVM_CLOSED' });
  assert.throws(() => vm.attach(new MemoryManager()), { name: 'KvmError', code: 'ERR_KVM_CLOSED' });
});

test('a change that fails part-way is undone: slots made before the failure are removed again', (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  const closing = MmapBackend.anonymous(0x1000);
  const mem = GuestMemory.fromRegions([
    new GuestMemoryRegion(G(0), MmapBackend.anonymous(0x10000)),
    new GuestMemoryRegion(G(0x100000), closing),
  ]);
  closing.close(); // its mapping can no longer be held for a slot
  assert.throws(() => vm.attach(mem), { name: 'BackendError', code: 'ERR_BACKEND_CLOSED' });
  assert.deepEqual(vm.slots(), [], 'the first region got a slot, which was removed again');
  const ok = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), MmapBackend.anonymous(0x10000))]);
  vm.attach(ok);
  assert.deepEqual(rows(vm), [[0, 0, 0x10000, false, 'region [0x0, 0x10000)']], 'KVM took slot 0 again: it was really deleted');
});
