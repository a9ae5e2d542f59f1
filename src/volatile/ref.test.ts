import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { u16le, u32le, u64le } from '../bytes/values.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { VolatileSlice } from './slice.js';

test('a VolatileRef and a VolatileArrayRef give the slice they cover: same memory, same dirty bitmap', () => {
  const bitmap = new AtomicBitmap(0x3000);
  const s = new VolatileSlice(new Uint8Array(0x3000), bitmap);
  const ref = s.getRef(u32le, 0x2004);
  const covered = ref.toSlice();
  assert.ok(covered instanceof VolatileSlice);
  assert.equal(covered.length, 4);
  covered.writeU32LE(0, 0xcafe_f00d);
  assert.equal(ref.load(), 0xcafe_f00d);
  assert.equal(s.readU32LE(0x2004), 0xcafe_f00d);
  assert.deepEqual([...bitmap.dirtyRanges()], [{ offset: 0x2000, length: 0x1000 }], 'the covering slice marks the same bitmap');
  assert.throws(() => covered.readU8(4), { code: 'ERR_OUT_OF_BOUNDS', address: 4 }, 'it covers the value and nothing more');

  const arr = s.getArrayRef(u16le, 0x10, 3);
  const all = arr.toSlice();
  assert.equal(all.length, 6);
  all.writeU16LE(4, 0xbeef);
  assert.equal(arr.get(2), 0xbeef);

  const mem = GuestMemory.fromRanges([[GuestAddress(0x1000), 0x1000]]);
  const guestRef = mem.getSlice(GuestAddress(0x1800), 8).getRef(u64le, 0);
  guestRef.toSlice().writeU64LE(0, 5n);
  assert.equal(mem.readU64LE(GuestAddress(0x1800)), 5n);
});

test('getArrayRef with more values than a safe integer can count in bytes is ERR_TOO_BIG, naming count and element size', () => {
  const s = new VolatileSlice(new Uint8Array(64));
  const count = 2 ** 52; // a safe integer whose byte count (2^54) is not
  assert.throws(() => s.getArrayRef(u32le, 8, count), (e: any) => {
    assert.equal(e.name, 'VolatileMemoryError');
    assert.equal(e.code, 'ERR_TOO_BIG');
    assert.deepEqual([e.count, e.elementSize, e.address], [count, 4, 8]);
    assert.match(e.message, /4503599627370496 values of 4 bytes \(u32le\)/);
    return true;
  });
  assert.throws(() => s.getArrayRef(u32le, 0, 17), { code: 'ERR_OUT_OF_BOUNDS', address: 0, length: 68 }, 'a count that fits a number but not the slice');
  assert.throws(() => s.getArrayRef(u32le, 0, -1), { code: 'ERR_INVALID_ADDRESS' }, 'a count that is no count at all');
  assert.equal(s.getArrayRef(u64le, 0, 8).length, 8);
});
