import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import { MemoryBacking } from './backing.js';
import type { FlatSpan, FlatViewEvent } from './flat-view.js';
import { MemoryManager } from './manager.js';
import type { AccessSize, MmioHandler, Region } from './regions.js';

const G = GuestAddress;
const R = (start: number, length: number) => AddressRange.fromLength(G(start), length);

/** An MMIO handler that answers `0xa0000000 + offset` and records every call. */
function recorder(): MmioHandler & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    read(offset: number, size: AccessSize) {
      calls.push(`r ${offset.toString(16)} ${size}`);
      return (0xa0000000 + offset) % 2 ** (8 * size);
    },
    write(offset: number, size: AccessSize, value: number) {
      calls.push(`w ${offset.toString(16)} ${size} ${value.toString(16)}`);
    },
  };
}

/** The flat view as `[start, end, source name, kind, offset, access]` rows. */
function rows(mm: MemoryManager): (string | number)[][] {
  return mm.flatView().map((s: FlatSpan) => [s.start, s.end, s.source.name, s.kind, s.offset, s.access]);
}

test('each kind shows in the flat view with its offset and permissions', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x10000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x4000, backing });
  mm.addRom({ name: 'rom', start: G(0x4000), length: 0x1000, backing, backingOffset: 0x8000 });
  mm.addDeviceMemory({ name: 'bar', start: G(0x5000), length: 0x1000, backing, backingOffset: 0x9000 });
  mm.addMmio({ name: 'uart', start: G(0x6000), length: 0x100, handler: recorder() });
  mm.addAlias({ name: 'ram-mirror', start: G(0x8000), length: 0x1000, target: ram, offset: 0x2000 });
  assert.deepEqual(rows(mm), [
    [0, 0x4000, 'ram', 'ram', 0, 'read-write'],
    [0x4000, 0x5000, 'rom', 'rom', 0, 'read-only'],
    [0x5000, 0x6000, 'bar', 'device', 0, 'read-write'],
    [0x6000, 0x6100, 'uart', 'mmio', 0, 'read-write'],
    [0x8000, 0x9000, 'ram', 'ram', 0x2000, 'read-write'],
  ]);
  const spans = mm.flatView();
  assert.deepEqual(spans.map((s) => s.backingOffset), [0, 0x8000, 0x9000, undefined, 0x2000]);
  assert.equal(spans[4].region.name, 'ram-mirror');
  assert.deepEqual(mm.regions().map((r) => [r.kind, r.priority]), [['ram', 255], ['rom', 0], ['device', 0], ['mmio', 0], ['alias', 255]]);

  // The alias and RAM are the same bytes; ROM and device memory are their backing bytes.
  mm.write(G(0x2010), 4, 0x11223344);
  assert.equal(mm.read(G(0x8010), 4), 0x11223344);
  const mem = mm.memory();
  assert.equal(mem.readU32LE(G(0x8010)), 0x11223344);
  mem.writeU8(G(0x5000), 0x77);
  assert.equal(backing.regions(G(0), 0x9000, 1)[0].readU8(0 as never), 0x77);
  assert.equal(mem.numRegions, 4); // RAM, ROM, device, alias (MMIO is not memory)
  assert.equal(mem.addressInRange(G(0x6000)), false);
});

test('priorities: the higher region wins, the lower shows around and through it', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x10000);
  const low = mm.addDeviceMemory({ name: 'low', start: G(0), length: 0x8000, backing, backingOffset: 0x8000 });
  const high = mm.addRam({ name: 'high', start: G(0x2000), length: 0x2000, backing });
  assert.deepEqual(rows(mm), [
    [0, 0x2000, 'low', 'device', 0, 'read-write'],
    [0x2000, 0x4000, 'high', 'ram', 0, 'read-write'],
    [0x4000, 0x8000, 'low', 'device', 0x4000, 'read-write'],
  ]);
  // Unmapping the higher region lets the lower one show through as one span.
  mm.unmap(high);
  assert.deepEqual(rows(mm), [[0, 0x8000, 'low', 'device', 0, 'read-write']]);
  mm.map(high);
  assert.equal(mm.flatView().length, 3);
  // Unmapping the lower one leaves only the higher.
  mm.unmap(low);
  assert.deepEqual(rows(mm), [[0x2000, 0x4000, 'high', 'ram', 0, 'read-write']]);
  // A region added above both, partly overlapping each, with a hole between.
  mm.map(low);
  mm.addMmio({ name: 'top', start: G(0x3000), length: 0x2000, priority: 1000, handler: recorder() });
  assert.deepEqual(rows(mm), [
    [0, 0x2000, 'low', 'device', 0, 'read-write'],
    [0x2000, 0x3000, 'high', 'ram', 0, 'read-write'],
    [0x3000, 0x5000, 'top', 'mmio', 0, 'read-write'],
    [0x5000, 0x8000, 'low', 'device', 0x5000, 'read-write'],
  ]);
  // Removing a region shows what lies below.
  mm.remove(high);
  assert.deepEqual(rows(mm), [
    [0, 0x3000, 'low', 'device', 0, 'read-write'],
    [0x3000, 0x5000, 'top', 'mmio', 0, 'read-write'],
    [0x5000, 0x8000, 'low', 'device', 0x5000, 'read-write'],
  ]);
});

test('equal priorities must not overlap, even while unmapped; touching is fine', () => {
  const mm = new MemoryManager();
  const a = mm.addMmio({ name: 'a', start: G(0x1000), length: 0x1000, handler: recorder(), mapped: false });
  mm.addMmio({ name: 'b', start: G(0x2000), length: 0x1000, handler: recorder() });
  assert.throws(
    () => mm.addMmio({ name: 'c', start: G(0x1800), length: 0x100, handler: recorder() }),
    (e: any) => {
      assert.equal(e.name, 'MemoryManagerError');
      assert.equal(e.code, 'ERR_PRIORITY_OVERLAP');
      assert.match(e.message, /mmio region c .* overlaps mmio region a .* priority 0/);
      assert.deepEqual([e.address, e.length], [0x1800, 0x100]);
      return true;
    },
  );
  assert.equal(mm.regions().length, 2);
  assert.equal(a.visibility, 'unmapped');
  mm.addMmio({ name: 'c', start: G(0x1800), length: 0x100, priority: 1, handler: recorder() });
  assert.equal(mm.regions().length, 3);
});

test('visibility transitions of RAM, whole regions at a time', () => {
  const mm = new MemoryManager({ unmapped: 'error' });
  const backing = MemoryBacking.allocate(0x3000);
  mm.addRam({ name: 'a', start: G(0), length: 0x1000, backing });
  const b = mm.addRam({ name: 'b', start: G(0x1000), length: 0x1000, backing, backingOffset: 0x1000 });
  const device = recorder();
  const under = mm.addMmio({ name: 'under', start: G(0x1000), length: 0x1000, handler: device });
  const states: string[] = [];
  const observe = () => {
    const s = mm.flatView().find((x) => x.start === 0x1000) as FlatSpan;
    states.push(`${b.visibility}:${s.kind}:${s.access}`);
  };
  const range = R(0x1000, 0x1000);
  for (const v of ['read-only', 'unmapped', 'read-write', 'unmapped', 'read-only', 'read-write'] as const) {
    mm.setVisibility(range, v);
    observe();
  }
  assert.deepEqual(states, [
    'read-only:ram:read-only',
    'unmapped:mmio:read-write',
    'read-write:ram:read-write',
    'unmapped:mmio:read-write',
    'read-only:ram:read-only',
    'read-write:ram:read-write',
  ]);
  // Read-only RAM still reads; guest writes go to what lies below (as PAM write-to-PCI).
  mm.write(G(0x1004), 4, 0xdeadbeef);
  mm.setVisibility(b, 'read-only');
  assert.equal(mm.read(G(0x1004), 4), 0xdeadbeef);
  mm.write(G(0x1004), 4, 1);
  assert.deepEqual(device.calls, ['w 4 4 1']);
  assert.equal(mm.read(G(0x1004), 4), 0xdeadbeef);
  // With nothing below, the write is refused and changes nothing.
  mm.remove(under);
  assert.throws(() => mm.write(G(0x1004), 4, 1), { code: 'ERR_READ_ONLY', address: 0x1004 });
  assert.equal(mm.read(G(0x1004), 4), 0xdeadbeef);
  // Same visibility again: no change, no events.
  const events: FlatViewEvent[][] = [];
  mm.subscribe((e) => events.push([...e]));
  events.length = 0;
  mm.setVisibility(b, 'read-only');
  assert.deepEqual(events, []);
});

test('visibility of a range that is not exactly one controllable region is refused', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x4000);
  const rom = mm.addRom({ name: 'rom', start: G(0x2000), length: 0x1000, backing });
  mm.addRam({ name: 'ram', start: G(0), length: 0x2000, backing, backingOffset: 0x1000 });
  const mmio = mm.addMmio({ name: 'io', start: G(0x8000), length: 0x1000, handler: recorder() });
  const check = (f: () => void, message: RegExp) => assert.throws(f, (e: any) => e.code === 'ERR_NOT_CONTROLLABLE' && message.test(e.message));
  check(() => mm.setVisibility(R(0, 0x1000), 'unmapped'), /no RAM, ROM or device region has exactly this range/); // part of a region
  check(() => mm.setVisibility(R(0, 0x3000), 'unmapped'), /no RAM, ROM or device region/); // two regions
  check(() => mm.setVisibility(R(0x8000, 0x1000), 'unmapped'), /no RAM, ROM or device region/); // MMIO
  check(() => mm.setVisibility(mmio, 'read-only'), /mmio regions are mapped and unmapped/);
  check(() => mm.setVisibility(rom, 'read-write'), /ROM cannot be made read-write/);
  check(() => mm.addRom({ name: 'r2', start: G(0x3000), length: 0x1000, backing, visibility: 'read-write' }), /ROM cannot/);
  mm.addDeviceMemory({ name: 'dup', start: G(0), length: 0x2000, backing, priority: 7 });
  check(() => mm.setVisibility(R(0, 0x2000), 'unmapped'), /2 regions have this range/);
  assert.throws(() => mm.setVisibility(R(0x2000, 0x1000), 'hidden' as never), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.setVisibility({ start: 0, end: 1 } as never, 'unmapped'), { code: 'ERR_INVALID_ARG' });
  // ROM may be unmapped and mapped again (read-only).
  mm.setVisibility(R(0x2000, 0x1000), 'unmapped');
  assert.equal(rom.visibility, 'unmapped');
  mm.map(rom);
  assert.equal(rom.visibility, 'read-only');
});

test('ROM: reads its backing, guest writes go to its handler or nowhere', () => {
  const mm = new MemoryManager({ unmapped: 'error' });
  const image = MemoryBacking.allocate(0x2000);
  image.regions(G(0), 0, 0x2000)[0].writeU32LE(0x10 as never, 0xcafef00d);
  const writes: string[] = [];
  mm.addRom({ name: 'flash', start: G(0x10000), length: 0x1000, backing: image, onWrite: (o, s, v) => writes.push(`${o.toString(16)} ${s} ${v.toString(16)}`) });
  mm.addRom({ name: 'bios', start: G(0x20000), length: 0x1000, backing: image, backingOffset: 0x1000 });
  assert.equal(mm.read(G(0x10010), 4), 0xcafef00d);
  mm.write(G(0x10010), 4, 0x12345678);
  mm.write(G(0x20010), 2, 0xffff); // dropped, even under 'error'
  assert.equal(mm.read(G(0x10010), 4), 0xcafef00d);
  assert.equal(mm.read(G(0x20010), 2), 0);
  assert.deepEqual(writes, ['10 4 12345678']);
  assert.throws(() => mm.addRom({ name: 'x', start: G(0), length: 1, backing: image, onWrite: 5 as never }), { code: 'ERR_INVALID_ARG' });
});

test('device memory: a device maps it in and out under RAM, as a BAR', () => {
  const mm = new MemoryManager();
  const bar = MemoryBacking.allocate(0x1000);
  const dev = mm.addDeviceMemory({ name: 'bar0', start: G(0xe000_0000), length: 0x1000, backing: bar, visibility: 'unmapped' });
  assert.deepEqual(mm.flatView(), []);
  assert.throws(() => mm.memory(), { code: 'ERR_NO_MEMORY' });
  mm.map(dev);
  mm.write(G(0xe000_0000), 4, 0x01020304);
  assert.equal(bar.regions(G(0), 0, 4)[0].readU32LE(0 as never), 0x01020304);
  const snapshot = mm.memory();
  mm.unmap(dev);
  assert.equal(mm.read(G(0xe000_0000), 4), 0xffffffff);
  // A snapshot taken before stays usable; a new one no longer has the BAR.
  assert.equal(snapshot.readU32LE(G(0xe000_0000)), 0x01020304);
  assert.throws(() => mm.memory(), { code: 'ERR_NO_MEMORY' });
});

test('aliases follow their target: unmapped with it, read-only with it', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x2000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x2000, backing });
  const alias = mm.addAlias({ name: 'hi', start: G(0x100000), length: 0x1000, target: ram, offset: 0x1000 });
  assert.equal(alias.priority, 255);
  mm.setVisibility(ram, 'read-only');
  assert.deepEqual(rows(mm)[1], [0x100000, 0x101000, 'ram', 'ram', 0x1000, 'read-only']);
  mm.unmap(ram);
  assert.deepEqual(rows(mm), []);
  mm.map(ram);
  mm.unmap(alias);
  assert.deepEqual(rows(mm), [[0, 0x2000, 'ram', 'ram', 0, 'read-write']]);
  mm.map(alias);
  // Aliases of MMIO hand the handler the target's offsets.
  const h = recorder();
  const io = mm.addMmio({ name: 'io', start: G(0x4000), length: 0x100, handler: h });
  mm.addAlias({ name: 'io-mirror', start: G(0x5000), length: 0x80, target: io, offset: 0x80 });
  assert.equal(mm.read(G(0x5004), 1), 0x84);
  assert.deepEqual(h.calls, ['r 84 1']);
  // Errors: a missing or alias target, a window past the target, removing a shown target.
  const other = new MemoryManager().addMmio({ name: 'x', start: G(0), length: 1, handler: h });
  assert.throws(() => mm.addAlias({ name: 'a', start: G(0x9000), length: 1, target: other }), { code: 'ERR_REGION_NOT_FOUND' });
  assert.throws(() => mm.addAlias({ name: 'a', start: G(0x9000), length: 1, target: alias }), { code: 'ERR_INVALID_REGION' });
  assert.throws(() => mm.addAlias({ name: 'a', start: G(0x9000), length: 0x1001, target: ram, offset: 0x1000 }), {
    code: 'ERR_INVALID_REGION',
    address: 0x9000,
    length: 0x1001,
  });
  assert.throws(() => mm.remove(ram), { code: 'ERR_REGION_IN_USE', address: 0, length: 0x2000 });
  mm.remove(alias);
  mm.remove(ram);
  assert.deepEqual(mm.regions().map((r) => r.name), ['io', 'io-mirror']);
});

test('region descriptions are checked before anything changes', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x1000);
  const h = recorder();
  assert.throws(() => mm.addRam({ name: 'r', start: G(0), length: 0, backing }), { code: 'ERR_INVALID_REGION' });
  assert.throws(() => mm.addRam({ name: 'r', start: G(Number.MAX_SAFE_INTEGER - 1), length: 4, backing }), { code: 'ERR_INVALID_REGION' });
  assert.throws(() => mm.addRam({ name: 'r', start: G(0), length: 0x1000, backing, backingOffset: 1 }), {
    code: 'ERR_INVALID_REGION',
    length: 0x1000,
  });
  assert.throws(() => mm.addRam({ name: 'r', start: G(0), length: 16, backing: {} as never }), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.addRam({ name: 'r', start: G(0), length: 16, backing, priority: 1.5 }), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.addRam({ name: 'r', start: G(0), length: 16, backing, visibility: 'on' as never }), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.addRam({ name: 7, start: G(0), length: 16, backing } as never), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.addRam({ name: 'r', start: -1 as never, length: 16, backing }), { code: 'ERR_INVALID_ADDRESS' });
  assert.throws(() => mm.addMmio({ name: 'm', start: G(0), length: 16, handler: {} as never }), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.addMmio({ name: 'm', start: G(0), length: 16, handler: h, accessSizes: [] }), { code: 'ERR_ACCESS_SIZE' });
  assert.throws(() => mm.addMmio({ name: 'm', start: G(0), length: 16, handler: h, accessSizes: [8 as never] }), { code: 'ERR_ACCESS_SIZE' });
  const r = mm.addRam({ name: 'r', start: G(0), length: 16, backing });
  mm.remove(r);
  assert.throws(() => mm.remove(r), { code: 'ERR_REGION_NOT_FOUND' });
  assert.throws(() => mm.map(r), { code: 'ERR_REGION_NOT_FOUND' });
  assert.throws(() => mm.unmap({} as never), { code: 'ERR_REGION_NOT_FOUND' });
  assert.throws(() => new MemoryManager({ unmapped: 'loud' as never }), { code: 'ERR_INVALID_ARG' });
  assert.deepEqual(mm.regions(), []);
  assert.equal(mm.generation, 2);
  // What the manager hands out cannot change its state.
  mm.addRam({ name: 'kept', start: G(0), length: 16, backing });
  assert.throws(() => (mm.regions() as Region[]).push(r), TypeError);
  assert.deepEqual(mm.regions().map((x) => x.name), ['kept']);
  assert.throws(() => mm.restrict(null as never), { name: 'MemoryManagerError', code: 'ERR_INVALID_ARG' });
  assert.throws(() => mm.restrict(5 as never), { name: 'MemoryManagerError', code: 'ERR_INVALID_ARG' });
});

test('listeners get ordered events, the current spans first, and may not change the layout', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x4000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x4000, backing });
  const log: string[] = [];
  const fmt = (s: FlatSpan) => `${s.start.toString(16)}-${s.end.toString(16)} ${s.source.name}`;
  const off = mm.subscribe((events) => {
    for (const e of events) log.push(e.type === 'changed' ? `changed ${fmt(e.previous)} -> ${fmt(e.span)} ${e.span.access}` : `${e.type} ${fmt(e.span)}`);
    log.push('|');
  });
  mm.addMmio({ name: 'io', start: G(0x1000), length: 0x1000, priority: 300, handler: recorder() });
  mm.setVisibility(ram, 'read-only');
  off();
  mm.unmap(ram);
  assert.deepEqual(log, [
    'added 0-4000 ram', '|',
    'removed 0-4000 ram', 'added 0-1000 ram', 'added 1000-2000 io', 'added 2000-4000 ram', '|',
    'changed 0-1000 ram -> 0-1000 ram read-only', 'changed 2000-4000 ram -> 2000-4000 ram read-only', '|',
  ]);

  // A throwing listener does not stop the others, nor undo the change.
  const seen: number[] = [];
  const boom = () => {
    throw new Error('boom');
  };
  assert.throws(() => mm.subscribe(boom), (e: any) => e.code === 'ERR_LISTENER_FAILED' && e.cause.message === 'boom');
  mm.subscribe((events) => seen.push(events.length));
  assert.throws(() => mm.map(ram), (e: any) => e.code === 'ERR_LISTENER_FAILED' && e.cause.message === 'boom');
  assert.equal(ram.visibility, 'read-write');
  assert.deepEqual(seen, [1, 2]);
  // Nor can one listener change the events the next one gets.
  const mm3 = new MemoryManager();
  const r3 = mm3.addRam({ name: 'r', start: G(0), length: 0x1000, backing });
  const got: string[] = [];
  const truncate = (events: readonly FlatViewEvent[]) => {
    (events as FlatViewEvent[]).length = 0;
  };
  assert.throws(() => mm3.subscribe(truncate), (e: any) => e.code === 'ERR_LISTENER_FAILED' && e.cause instanceof TypeError);
  mm3.subscribe((events) => got.push(...events.map((e) => e.type)));
  assert.throws(() => mm3.unmap(r3), (e: any) => e.code === 'ERR_LISTENER_FAILED' && e.cause instanceof TypeError);
  assert.deepEqual(got, ['added', 'removed']);

  // Changing the layout from a listener is refused.
  const mm2 = new MemoryManager();
  const r2 = mm2.addRam({ name: 'r', start: G(0), length: 0x1000, backing });
  mm2.subscribe((events) => {
    if (events[0].type === 'removed') mm2.map(r2);
  });
  assert.throws(() => mm2.unmap(r2), (e: any) => e.code === 'ERR_LISTENER_FAILED' && e.cause.code === 'ERR_REENTRANT_CHANGE');
  assert.equal(r2.visibility, 'unmapped');
  assert.throws(() => mm2.subscribe(5 as never), { code: 'ERR_INVALID_ARG' });
});

test('a listener that may refuse a change: the layout stays as it was and those that applied it undo it', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x4000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x4000, backing });
  /** A listener that keeps the spans it was told of, as a hypervisor's slots would. */
  const mirror = () => {
    const spans = new Map<number, FlatSpan>();
    const listener = (events: readonly FlatViewEvent[]) => {
      for (const e of events) if (e.type !== 'added') spans.delete((e.type === 'changed' ? e.previous : e.span).start);
      for (const e of events) if (e.type !== 'removed') spans.set(e.span.start, e.span);
    };
    return { spans, listener, rows: () => [...spans.values()].sort((a, b) => a.start - b.start).map((s) => [s.start, s.end, s.source.name, s.access]) };
  };
  const viewRows = () => mm.flatView().map((s) => [s.start, s.end, s.source.name, s.access]);
  const first = mirror();
  mm.subscribe(first.listener, { mayRefuse: true });
  const order: string[] = [];
  const seenView: unknown[] = [];
  mm.subscribe(
    (events) => {
      order.push('refuser');
      seenView.push(viewRows());
      if (events.some((e) => e.type !== 'removed' && e.span.kind === 'mmio')) throw new Error('no MMIO here');
    },
    { mayRefuse: true },
  );
  const plain: FlatViewEvent[][] = [];
  mm.subscribe((events) => {
    order.push('plain');
    plain.push([...events]);
  });
  plain.length = 0;
  order.length = 0;
  seenView.length = 0;
  const before = viewRows();
  const generation = mm.generation;
  const memory = mm.memory();

  assert.throws(
    () => mm.addMmio({ name: 'io', start: G(0x1000), length: 0x1000, priority: 300, handler: recorder() }),
    (e: any) => e.name === 'MemoryManagerError' && e.code === 'ERR_CHANGE_REFUSED' && e.cause.message === 'no MMIO here' && /no MMIO here/.test(e.message),
  );
  assert.deepEqual(mm.regions().map((r) => r.name), ['ram'], 'the region was not added');
  assert.deepEqual(viewRows(), before);
  assert.equal(mm.generation, generation);
  assert.equal(mm.memory(), memory, 'the same guest memory');
  assert.deepEqual(first.rows(), before, 'the listener that applied the change was told to undo it');
  assert.deepEqual(plain, [], 'after-the-fact listeners heard nothing');
  assert.deepEqual(seenView, [before], 'refusers hear of a change before it is in effect');

  // An accepted change: refusers first, then the others.
  mm.setVisibility(ram, 'read-only');
  assert.deepEqual(order, ['refuser', 'refuser', 'plain']);
  assert.deepEqual(first.rows(), viewRows());
  assert.deepEqual(viewRows(), [[0, 0x4000, 'ram', 'read-only']]);

  // A listener that fails to undo is reported along with the refusal.
  const mm2 = new MemoryManager();
  mm2.addRam({ name: 'r', start: G(0), length: 0x1000, backing });
  let calls = 0;
  mm2.subscribe(
    () => {
      if (++calls === 3) throw new Error('cannot undo');
    },
    { mayRefuse: true },
  );
  mm2.subscribe(
    (events) => {
      if (events.some((e) => e.type === 'added' && e.span.start === 0x1000)) throw new Error('refused');
    },
    { mayRefuse: true },
  );
  assert.throws(
    () => mm2.addRam({ name: 'r2', start: G(0x1000), length: 0x1000, backing }),
    (e: any) => e.code === 'ERR_CHANGE_REFUSED' && e.cause instanceof AggregateError && e.cause.errors.map((x: Error) => x.message).join() === 'refused,cannot undo',
  );
  assert.equal(mm2.regions().length, 1);

  // Refusing the current spans at subscription: not subscribed.
  const mm3 = new MemoryManager();
  mm3.addRam({ name: 'r', start: G(0), length: 0x1000, backing });
  let told = 0;
  assert.throws(
    () =>
      mm3.subscribe(
        () => {
          told++;
          throw new Error('not this memory');
        },
        { mayRefuse: true },
      ),
    (e: any) => e.code === 'ERR_CHANGE_REFUSED' && e.cause.message === 'not this memory',
  );
  mm3.addRam({ name: 'r2', start: G(0x1000), length: 0x1000, backing });
  assert.equal(told, 1, 'the refusing listener was not subscribed');
  // From inside a listener, a refusing listener cannot subscribe.
  mm3.subscribe(() => {
    assert.throws(() => mm3.subscribe(() => {}, { mayRefuse: true }), { code: 'ERR_REENTRANT_CHANGE' });
  });
});

test('restricted views reach only their ranges, and follow the layout', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x10000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x10000, backing });
  mm.addMmio({ name: 'io', start: G(0x3000), length: 0x1000, priority: 300, handler: recorder() });
  const dma = mm.restrict([R(0x2000, 0x4000), R(0x5000, 0x2000), R(0x9000, 0x1000)]);
  assert.deepEqual(dma.ranges.map(String), ['[0x2000, 0x7000)', '[0x9000, 0xa000)']);
  const view = dma.memory();
  // MMIO inside the window is not memory; [0x2000,0x3000), [0x4000,0x7000), [0x9000,0xa000) are.
  assert.deepEqual(view.regions().map((r) => [r.start, r.end]), [[0x2000, 0x3000], [0x4000, 0x7000], [0x9000, 0xa000]]);
  view.writeU32LE(G(0x6ffc), 0xabcdef01);
  assert.equal(mm.read(G(0x6ffc), 4), 0xabcdef01);
  for (const a of [0x1fff, 0x3000, 0x7000, 0xa000]) {
    assert.throws(() => view.readU8(G(a)), { name: 'GuestMemoryError', code: 'ERR_GUEST_ADDRESS_INVALID', address: a });
  }
  assert.throws(() => view.writeSlice(G(0x6ffc), new Uint8Array(8)), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x7000 });
  assert.equal(mm.read(G(0x7000), 4), 0);
  // The same holder answers with the new layout after a change, and reuses its snapshot otherwise.
  assert.equal(dma.memory(), view);
  mm.setVisibility(ram, 'unmapped');
  assert.throws(() => dma.memory(), { code: 'ERR_NO_MEMORY' });
  mm.setVisibility(ram, 'read-write');
  assert.notEqual(dma.memory(), view);
  assert.equal(dma.memory().readU32LE(G(0x6ffc)), 0xabcdef01);
  assert.throws(() => mm.restrict([[0, 1] as never]), { code: 'ERR_INVALID_ARG' });
});

test('batch: several changes as one, or none of them', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x4000);
  const pams = [0, 1, 2, 3].map((i) => mm.addRam({ name: `pam${i}`, start: G(i * 0x1000), length: 0x1000, backing, backingOffset: i * 0x1000 }));
  const calls: FlatViewEvent[][] = [];
  mm.subscribe((events) => calls.push([...events]));
  calls.length = 0;
  const generation = mm.generation;
  mm.batch(() => {
    for (const p of pams) mm.setVisibility(p, 'read-only');
    mm.batch(() => mm.unmap(pams[3])); // nested: part of the same change
  });
  assert.equal(mm.generation, generation + 1);
  assert.deepEqual(calls.map((c) => c.map((e) => e.type)), [['removed', 'changed', 'changed', 'changed']]);
  assert.deepEqual(mm.flatView().map((s) => s.access), ['read-only', 'read-only', 'read-only']);
  // A batch that throws undoes everything it did, adds and removals included, and tells no one.
  const before = mm.flatView();
  assert.throws(
    () =>
      mm.batch(() => {
        mm.map(pams[3]);
        mm.remove(pams[0]);
        mm.addMmio({ name: 'io', start: G(0x8000), length: 16, handler: { read: () => 0, write: () => {} } });
        mm.addMmio({ name: 'io2', start: G(0x8000), length: 16, handler: { read: () => 0, write: () => {} } });
      }),
    { code: 'ERR_PRIORITY_OVERLAP' },
  );
  assert.equal(mm.flatView(), before);
  assert.deepEqual(mm.regions(), pams);
  assert.equal(pams[3].visibility, 'unmapped');
  assert.equal(calls.length, 1);
  assert.equal(mm.generation, generation + 1);
  assert.throws(() => mm.batch(5 as never), { name: 'MemoryManagerError', code: 'ERR_INVALID_ARG' });
  assert.equal(mm.generation, generation + 1);
  // From a listener, batches are refused like every change, from its first events on.
  const reentrant = (e: any) => e.code === 'ERR_LISTENER_FAILED' && e.cause.code === 'ERR_REENTRANT_CHANGE';
  assert.throws(() => mm.subscribe(() => mm.batch(() => {})), reentrant);
  assert.throws(() => mm.map(pams[3]), reentrant);
  assert.equal(pams[3].visibility, 'read-write');
});

test('the guest memory refuses writes to ROM and read-only spans, as restricted views do', () => {
  const mm = new MemoryManager();
  const backing = MemoryBacking.allocate(0x4000);
  const ram = mm.addRam({ name: 'ram', start: G(0), length: 0x2000, backing });
  mm.addRom({ name: 'rom', start: G(0x2000), length: 0x1000, backing, backingOffset: 0x2000 });
  const check = (mem: ReturnType<MemoryManager['memory']>, addr: number) => {
    assert.throws(() => mem.writeU32LE(G(addr), 1), { name: 'GuestMemoryError', code: 'ERR_READ_ONLY' });
    assert.throws(() => mem.writeSlice(G(addr - 2), new Uint8Array(4)), { code: 'ERR_READ_ONLY' });
    assert.equal(mem.readU32LE(G(addr)), 0);
  };
  check(mm.memory(), 0x2000);
  mm.memory().writeU16LE(G(0x1ffe), 0xabcd); // RAM before the ROM is writable
  const dma = mm.restrict([R(0x1000, 0x2000)]);
  check(dma.memory(), 0x2000);
  mm.setVisibility(ram, 'read-only');
  check(mm.memory(), 0x1000);
  check(dma.memory(), 0x1002);
  assert.equal(mm.memory().readU16LE(G(0x1ffe)), 0xabcd, 'and the refused straddling write changed nothing');
  mm.setVisibility(ram, 'read-write');
  mm.memory().writeU32LE(G(0x1000), 7);
  assert.equal(mm.read(G(0x1000), 4), 7);
});

test('a change whose guest memory cannot be built is undone: RAM over a read-only backend', () => {
  const mm = new MemoryManager();
  const bytes = MemoryBacking.allocate(0x1000).chunks[0];
  const image = new MemoryBacking({ kind: 'image', size: bytes.size, byteOffset: 0, shared: false, readOnly: true, views: () => bytes.views() });
  const rom = mm.addRom({ name: 'rom', start: G(0), length: 0x1000, backing: image });
  const before = mm.flatView();
  const generation = mm.generation;
  assert.throws(() => mm.addRam({ name: 'ram', start: G(0x1000), length: 0x1000, backing: image }), {
    name: 'RegionError',
    code: 'ERR_REGION_READ_ONLY_BACKEND',
  });
  assert.deepEqual(mm.regions(), [rom]);
  assert.equal(mm.flatView(), before);
  assert.equal(mm.generation, generation);
  assert.equal(mm.memory().regions()[0].readOnly, true);
});
