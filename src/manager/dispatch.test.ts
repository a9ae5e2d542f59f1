import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { MemoryBacking } from './backing.js';
import { MemoryManager } from './manager.js';
import type { AccessSize, MmioHandler } from './regions.js';

const G = GuestAddress;

/** A device of `bytes` registers that logs each access: byte-exact, so splits are visible. */
function device(bytes: number): MmioHandler & { calls: string[]; mem: Uint8Array } {
  const mem = new Uint8Array(bytes);
  const calls: string[] = [];
  return {
    calls,
    mem,
    read(offset: number, size: AccessSize) {
      calls.push(`r${size}@${offset.toString(16)}`);
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + mem[offset + i];
      return v;
    },
    write(offset: number, size: AccessSize, value: number) {
      calls.push(`w${size}@${offset.toString(16)}=${value.toString(16)}`);
      for (let i = 0; i < size; i++) mem[offset + i] = Math.floor(value / 256 ** i) & 0xff;
    },
  };
}

/** RAM [0, 0x1000), MMIO [0x1000, 0x1010) taking `sizes`, a hole, RAM [0x2000, 0x3000). */
function layout(sizes?: AccessSize[], unmapped: 'ignore' | 'error' = 'ignore') {
  const mm = new MemoryManager({ unmapped });
  const backing = MemoryBacking.allocate(0x2000);
  mm.addRam({ name: 'low', start: G(0), length: 0x1000, backing });
  const dev = device(0x10);
  mm.addMmio({ name: 'dev', start: G(0x1000), length: 0x10, handler: dev, accessSizes: sizes });
  mm.addRam({ name: 'high', start: G(0x2000), length: 0x1000, backing, backingOffset: 0x1000 });
  return { mm, dev, mem: () => mm.memory() };
}

test('RAM reads and writes of 1, 2 and 4 bytes, little-endian', () => {
  const { mm, mem } = layout();
  mm.write(G(0x100), 4, 0x11223344);
  mm.write(G(0x104), 2, 0xbeef);
  mm.write(G(0x106), 1, 0x7f);
  const bytes = new Uint8Array(7);
  mem().readSlice(G(0x100), bytes);
  assert.deepEqual([...bytes], [0x44, 0x33, 0x22, 0x11, 0xef, 0xbe, 0x7f]);
  assert.equal(mm.read(G(0x101), 4), 0xef112233);
  assert.equal(mm.read(G(0x104), 2), 0xbeef);
  assert.equal(mm.read(G(0x106), 1), 0x7f);
  assert.equal(mm.read(G(0x2ffc), 4), 0);
});

test('MMIO accesses reach the handler with the offset inside the region', () => {
  const { mm, dev } = layout();
  mm.write(G(0x1004), 4, 0xa1b2c3d4);
  assert.equal(mm.read(G(0x1006), 2), 0xa1b2);
  assert.equal(mm.read(G(0x1004), 1), 0xd4);
  assert.deepEqual(dev.calls, ['w4@4=a1b2c3d4', 'r2@6', 'r1@4']);
});

test('sizes an MMIO region does not take are split into ones it does', () => {
  const { mm, dev } = layout([1]);
  mm.write(G(0x1000), 4, 0x04030201);
  assert.equal(mm.read(G(0x1000), 2), 0x0201);
  assert.deepEqual(dev.calls, ['w1@0=1', 'w1@1=2', 'w1@2=3', 'w1@3=4', 'r1@0', 'r1@1']);
  // Only larger sizes accepted: a 1-byte access cannot be given; nothing is called.
  const wide = layout([4]);
  assert.throws(() => wide.mm.read(G(0x1000), 2), { code: 'ERR_ACCESS_SIZE', address: 0x1000, length: 2 });
  assert.throws(() => wide.mm.write(G(0x1000), 1, 1), { code: 'ERR_ACCESS_SIZE' });
  assert.deepEqual(wide.dev.calls, []);
});

test('accesses that straddle RAM, MMIO and holes are split at the span edges', () => {
  const { mm, dev, mem } = layout();
  mem().writeSlice(G(0xffe), new Uint8Array([0x11, 0x22]));
  dev.mem.set([0x33, 0x44, 0x55]);
  // 2 bytes of RAM, then 2 bytes of MMIO given as one 2-byte access.
  assert.equal(mm.read(G(0xffe), 4), 0x44332211);
  assert.deepEqual(dev.calls, ['r2@0']);
  // 3 bytes in RAM + 1 in MMIO; the MMIO part is 1 byte.
  dev.calls.length = 0;
  mm.write(G(0xffd), 4, 0xaabbccdd);
  assert.deepEqual(dev.calls, ['w1@0=aa']);
  const bytes = new Uint8Array(3);
  mem().readSlice(G(0xffd), bytes);
  assert.deepEqual([...bytes], [0xdd, 0xcc, 0xbb]);
  // 1 MMIO byte, 3 bytes of hole: all ones for the hole, writes to it dropped.
  dev.calls.length = 0;
  dev.mem[0xf] = 0x5a;
  assert.equal(mm.read(G(0x100f), 4), 0xffffff5a);
  mm.write(G(0x100f), 4, 0x01020304);
  assert.deepEqual(dev.calls, ['r1@f', 'w1@f=4']);
  // Hole, then RAM; a 3-byte MMIO tail is given as 2 + 1.
  mem().writeU16LE(G(0x2000), 0x6677);
  assert.equal(mm.read(G(0x1ffe), 4), 0x6677ffff);
  dev.calls.length = 0;
  mm.read(G(0x100d), 4);
  assert.deepEqual(dev.calls, ['r2@d', 'r1@f']);
  // Every address of a straddling access, checked one byte at a time against the parts.
  for (let a = 0xffc; a < 0x1000; a++) {
    const v = mm.read(G(a), 4);
    for (let i = 0; i < 4; i++) assert.equal(Math.floor(v / 256 ** i) & 0xff, mm.read(G(a + i), 1));
  }
});

test("the 'error' policy refuses unmapped and read-only accesses before touching anything", () => {
  const { mm, dev, mem } = layout(undefined, 'error');
  assert.throws(() => mm.read(G(0x1800), 4), { name: 'MemoryManagerError', code: 'ERR_UNMAPPED_ACCESS', address: 0x1800, length: 4 });
  assert.throws(() => mm.write(G(0x5000), 1, 0), { code: 'ERR_UNMAPPED_ACCESS' });
  // Straddling into a hole: the MMIO part is not performed either.
  assert.throws(() => mm.read(G(0x100e), 4), { code: 'ERR_UNMAPPED_ACCESS', address: 0x1010 });
  assert.throws(() => mm.write(G(0x100e), 4, 0xffffffff), { code: 'ERR_UNMAPPED_ACCESS' });
  assert.deepEqual(dev.calls, []);
  // Straddling into read-only RAM: the RAM part before it is not written.
  const ro = mm.regions().find((r) => r.name === 'high');
  mm.remove(mm.regions()[1]);
  mm.addRam({ name: 'mid', start: G(0x1000), length: 0x1000, backing: MemoryBacking.allocate(0x1000) });
  mm.setVisibility(ro as never, 'read-only');
  assert.throws(() => mm.write(G(0x1ffe), 4, 0xffffffff), { code: 'ERR_READ_ONLY', address: 0x2000 });
  assert.equal(mem().readU16LE(G(0x1ffe)), 0);
});

test("the 'ignore' policy reads all ones and drops writes to nothing and to read-only RAM", () => {
  const { mm, mem } = layout();
  assert.equal(mm.read(G(0x1800), 4), 0xffffffff);
  assert.equal(mm.read(G(0x1800), 2), 0xffff);
  assert.equal(mm.read(G(2 ** 40), 1), 0xff);
  mm.write(G(0x1800), 4, 1);
  const high = mm.regions().find((r) => r.name === 'high');
  mm.setVisibility(high as never, 'read-only');
  mm.write(G(0x2000), 4, 0x12345678);
  assert.equal(mem().readU32LE(G(0x2000)), 0);
});

test('bad sizes, values and addresses are typed errors', () => {
  const { mm } = layout();
  for (const size of [0, 3, 8, 1.5, Number.NaN]) {
    assert.throws(() => mm.read(G(0), size as never), { code: 'ERR_ACCESS_SIZE' });
    assert.throws(() => mm.write(G(0), size as never, 0), { code: 'ERR_ACCESS_SIZE' });
  }
  for (const [size, value] of [[1, 256], [2, 0x10000], [4, 2 ** 32], [4, -1], [1, 1.5], [2, Number.NaN]] as const) {
    assert.throws(() => mm.write(G(0), size, value), { code: 'ERR_INVALID_ARG', address: 0, length: size });
    assert.throws(() => mm.write(G(0x1000), size, value), { code: 'ERR_INVALID_ARG' });
  }
  assert.equal(mm.read(G(0), 4), 0);
  for (const addr of [-1, 0.5, 2 ** 53, Number.NaN, '16', 16n]) {
    assert.throws(() => mm.read(addr as never, 1), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => mm.write(addr as never, 1, 0), { code: 'ERR_INVALID_ADDRESS' });
  }
  // After a hit, a fractional address next to it still misses the fast path and is refused.
  mm.read(G(0x10), 4);
  assert.throws(() => mm.read(16.5 as never, 1), { code: 'ERR_INVALID_ADDRESS' });
  // The last byte of an access must be a safe address too (past 2^53 the hole's size rounds).
  const top = Number.MAX_SAFE_INTEGER;
  assert.equal(mm.read(G(top - 3), 4), 0xffffffff);
  assert.equal(mm.read(G(top - 1), 2), 0xffff);
  assert.equal(mm.read(G(top), 1), 0xff);
  for (const [addr, size] of [[top, 4], [top, 2], [top - 2, 4]] as const) {
    assert.throws(() => mm.read(G(addr), size), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => mm.write(G(addr), size, 0), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
  }
});

test('an MMIO handler that answers out of range is masked to the access size', () => {
  const mm = new MemoryManager();
  mm.addMmio({ name: 'wild', start: G(0), length: 8, handler: { read: () => -1, write: () => {} } });
  assert.deepEqual([mm.read(G(0), 1), mm.read(G(0), 2), mm.read(G(0), 4)], [0xff, 0xffff, 0xffffffff]);
});

test('writes to read-only RAM land on what lies below: device memory, ROM handlers', () => {
  const mm = new MemoryManager({ unmapped: 'error' });
  const backing = MemoryBacking.allocate(0x3000);
  const shadow = mm.addRam({ name: 'shadow', start: G(0), length: 0x2000, backing, visibility: 'read-only' });
  const romWrites: string[] = [];
  mm.addRom({ name: 'rom', start: G(0), length: 0x1000, backing, backingOffset: 0x2000, onWrite: (o, s, v) => romWrites.push(`${o}:${s}:${v}`) });
  const dev = mm.addDeviceMemory({ name: 'dev', start: G(0x1000), length: 0x1000, backing, backingOffset: 0x2000 });
  mm.write(G(0x10), 2, 0x1234); // to the ROM's handler
  mm.write(G(0x1010), 2, 0x5678); // into the device memory (backing 0x2010)
  mm.write(G(0xffe), 4, 0xaabbccdd); // straddles: 2 bytes to the ROM handler, 2 into device memory
  assert.deepEqual(romWrites, ['16:2:4660', '4094:2:52445']);
  assert.equal(mm.read(G(0x1010), 2), 0, 'reads still see the read-only RAM');
  const dv = backing.chunks[0].views().dv;
  assert.equal(dv.getUint16(0x2010, true), 0x5678);
  assert.equal(dv.getUint16(0x2000, true), 0xaabb);
  assert.deepEqual(mm.flatView('writes').map((s) => s.source.name), ['rom', 'dev']);
  // Unmapping the device memory leaves that half with nothing below: the whole write is refused.
  mm.unmap(dev);
  assert.throws(() => mm.write(G(0xffe), 4, 0), { code: 'ERR_READ_ONLY', address: 0x1000 });
  assert.equal(romWrites.length, 2);
  mm.setVisibility(shadow, 'read-write');
  mm.write(G(0x10), 2, 0x4321);
  assert.equal(mm.read(G(0x10), 2), 0x4321);
  assert.equal(romWrites.length, 2);
});
