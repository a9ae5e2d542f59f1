import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { u16le, u32le, u64le } from '../bytes/values.js';
import { pagesOf } from '../test-support/bitmap.js';
import { VolatileSlice } from './slice.js';

const seq = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

test('a slice over any Uint8Array respects its byteOffset and length', () => {
  const backing = seq(32);
  const s = new VolatileSlice(backing.subarray(8, 24));
  assert.equal(s.length, 16);
  assert.equal(s.readU8(0), 8);
  s.writeU32LE(12, 0xaabbccdd);
  assert.deepEqual([...backing.subarray(20, 24)], [0xdd, 0xcc, 0xbb, 0xaa]);
  assert.throws(() => s.readU32LE(13), { name: 'VolatileMemoryError', code: 'ERR_OUT_OF_BOUNDS', address: 13, length: 4 });
  assert.equal(backing[24], 24, 'nothing past the slice touched');
  assert.throws(() => new VolatileSlice([1, 2] as unknown as Uint8Array), { code: 'ERR_INVALID_ARG' });
});

test('subslice, offset and splitAt share memory and check bounds', () => {
  const s = new VolatileSlice(seq(16));
  const sub = s.subslice(4, 8);
  assert.equal(sub.readU8(0), 4);
  sub.writeU8(7, 0xee);
  assert.equal(s.readU8(11), 0xee);
  assert.equal(s.offset(10).length, 6);
  const [a, b] = s.splitAt(5);
  assert.deepEqual([a.length, b.length, b.readU8(0)], [5, 11, 5]);
  assert.throws(() => s.subslice(10, 7), { code: 'ERR_OUT_OF_BOUNDS', address: 10, length: 7 });
  assert.throws(() => s.offset(17), { code: 'ERR_OUT_OF_BOUNDS' });
  assert.throws(() => s.subslice(-1, 1), { code: 'ERR_INVALID_ADDRESS' });
  assert.equal(s.subslice(16, 0).length, 0);
});

test('partial read/write stop at the end; exact ones refuse and change nothing', () => {
  const s = new VolatileSlice(new Uint8Array(8));
  assert.equal(s.write(6, seq(4, 1)), 2);
  assert.deepEqual([...s.view('read')], [0, 0, 0, 0, 0, 0, 1, 2]);
  assert.throws(() => s.write(8, seq(4)), { code: 'ERR_OUT_OF_BOUNDS', address: 8 }, 'at the end nothing can move: an error, not 0');
  assert.equal(s.read(8, new Uint8Array(0)), 0);
  assert.throws(() => s.read(9, new Uint8Array(1)), { code: 'ERR_OUT_OF_BOUNDS', address: 9 });
  assert.throws(() => s.writeSlice(6, seq(4, 9)), (e: any) => {
    assert.equal(e.code, 'ERR_PARTIAL_BUFFER');
    assert.deepEqual([e.expected, e.completed, e.address], [4, 0, 6]);
    return true;
  });
  assert.deepEqual([...s.view('read')], [0, 0, 0, 0, 0, 0, 1, 2], 'unchanged');
  assert.throws(() => s.readSlice(9, new Uint8Array(1)), { code: 'ERR_OUT_OF_BOUNDS' });
  assert.throws(() => s.fill(4, 5, 1), { code: 'ERR_PARTIAL_BUFFER', expected: 5 });
  assert.throws(() => s.fill(0, 1, 256), { code: 'ERR_VALUE_OUT_OF_RANGE' });
  s.fill(2, 3, 0x7f);
  assert.deepEqual([...s.view('read')], [0, 0, 0x7f, 0x7f, 0x7f, 0, 1, 2]);
  s.zero(0, 8);
  assert.deepEqual([...s.view('read')], new Array(8).fill(0));
  assert.throws(() => s.read(0, 'x' as unknown as Uint8Array), { code: 'ERR_INVALID_ARG' });
});

test('copyTo is overlap-safe (memmove) and copies the shorter length', () => {
  const s = new VolatileSlice(seq(16));
  assert.equal(s.subslice(0, 8).copyTo(s.subslice(2, 8)), 8);
  assert.deepEqual([...s.view('read').subarray(0, 10)], [0, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
  const other = new VolatileSlice(new Uint8Array(4));
  assert.equal(s.copyTo(other), 4);
  assert.deepEqual([...other.view('read')], [0, 1, 0, 1]);
  assert.equal(other.copyFrom(new VolatileSlice(seq(2, 9))), 2);
  assert.deepEqual([...other.view('read')], [9, 10, 0, 1]);
});

test('VolatileRef and VolatileArrayRef load and store typed values in place', () => {
  const s = new VolatileSlice(new Uint8Array(32));
  const r = s.getRef(u64le, 8);
  r.store(0x1122334455667788n);
  assert.equal(r.load(), 0x1122334455667788n);
  assert.equal(s.readU32LE(8), 0x55667788);
  assert.throws(() => r.store(-1n), { code: 'ERR_VALUE_OUT_OF_RANGE' });
  assert.throws(() => s.getRef(u32le, 30), { code: 'ERR_OUT_OF_BOUNDS' });
  const arr = s.getArrayRef(u16le, 0, 4);
  arr.copyFrom([1, 2, 3, 4]);
  assert.deepEqual(arr.toArray(), [1, 2, 3, 4]);
  arr.set(3, 0xffff);
  assert.equal(arr.get(3), 0xffff);
  assert.throws(() => arr.get(4), { code: 'ERR_OUT_OF_BOUNDS', address: 4 });
  assert.throws(() => arr.copyFrom([1, 2], 3), { code: 'ERR_OUT_OF_BOUNDS' });
  assert.throws(() => arr.copyFrom([5, 0x10000]), { code: 'ERR_VALUE_OUT_OF_RANGE' });
  assert.equal(arr.get(0), 1, 'a bad value in copyFrom changes nothing');
  assert.throws(() => s.getArrayRef(u32le, 0, 9), { code: 'ERR_OUT_OF_BOUNDS' });
});

test('atomics refuse memory that is not shared and misaligned addresses', () => {
  const heap = new VolatileSlice(new Uint8Array(16));
  assert.throws(() => heap.loadU32(0), { code: 'ERR_NOT_SHARED', address: 0, length: 4 });
  const shared = new VolatileSlice(new Uint8Array(new SharedArrayBuffer(16)));
  assert.throws(() => shared.storeU32(2, 1), { code: 'ERR_MISALIGNED', address: 2, length: 4 });
  assert.throws(() => shared.loadU64(4), { code: 'ERR_MISALIGNED' });
  shared.storeU64(8, 5n);
  assert.equal(shared.compareExchangeU64(8, 4n, 9n), 5n, 'no store when expected differs');
  assert.equal(shared.compareExchangeU64(8, 5n, 9n), 5n);
  assert.equal(shared.loadU64(8), 9n);
  assert.throws(() => shared.storeU64(8, 1 as unknown as bigint), { code: 'ERR_VALUE_OUT_OF_RANGE' });
  assert.throws(() => shared.compareExchangeU8(0, 256, 1), { code: 'ERR_VALUE_OUT_OF_RANGE' }, 'an expected value that cannot match');
  shared.storeU16(2, 0xbeef);
  assert.equal(shared.compareExchangeU16(2, 0xbeef, 1), 0xbeef);
  assert.equal(shared.loadU16(2), 1);
  assert.equal(shared.compareExchangeU8(1, 0, 7), 0);
  assert.equal(shared.loadU8(1), 7);
});

test('a slice whose buffer was detached throws ERR_DETACHED instead of reading nothing', () => {
  const bytes = new Uint8Array(16);
  const s = new VolatileSlice(bytes);
  s.writeU32LE(0, 1);
  structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
  assert.throws(() => s.readU32LE(0), { code: 'ERR_DETACHED' });
  assert.throws(() => s.writeU8(0, 1), { code: 'ERR_DETACHED' });
  assert.throws(() => s.read(0, new Uint8Array(4)), { code: 'ERR_DETACHED' });
});

test('markWritten marks what was written through a write view, after the write', () => {
  const bitmap = new AtomicBitmap(4 * 4096);
  const s = new VolatileSlice(new Uint8Array(4 * 4096), bitmap).subslice(4096, 2 * 4096);
  const v = s.view('write');
  assert.deepEqual(pagesOf(bitmap), [1, 2], 'marked before the view is handed out');
  bitmap.harvest(); // a harvest while the view is being written: it takes the marks
  v.fill(1, 4200, 4400); // bitmap bytes 8296..8496: page 2
  assert.deepEqual(pagesOf(bitmap), [], 'writes through the view are unseen');
  s.markWritten(4200, 200);
  assert.deepEqual(pagesOf(bitmap), [2]);
  bitmap.harvest();
  s.markWritten(); // default: the whole slice
  assert.deepEqual(pagesOf(bitmap), [1, 2]);
});

test('markWritten refuses a range outside the slice, marking nothing', () => {
  const bitmap = new AtomicBitmap(4096);
  const s = new VolatileSlice(new Uint8Array(4096), bitmap).subslice(0, 64);
  assert.throws(() => s.markWritten(60, 8), { name: 'VolatileMemoryError', code: 'ERR_OUT_OF_BOUNDS', address: 60, length: 8 });
  assert.throws(() => s.markWritten(65), { code: 'ERR_INVALID_ADDRESS' }, 'the default length is negative past the end');
  assert.throws(() => s.markWritten(-1, 1), { code: 'ERR_INVALID_ADDRESS' });
  assert.equal(bitmap.count(), 0);
  s.markWritten(64, 0);
  assert.equal(bitmap.count(), 0, 'an empty range marks nothing');
});
