/** GuestMemoryRegion: the dirty bitmap it is given must cover it. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GuestAddress, MemoryRegionAddress } from '../address/address.js';
import { heapBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { NoopBitmap } from '../bitmap/bitmap.js';
import { GuestMemoryRegion } from './region.js';

const PAGE = 4096;
const G = GuestAddress;

describe('GuestMemoryRegion dirty bitmap', () => {
  test('refuses an AtomicBitmap that covers fewer bytes than the region (ERR_REGION_BITMAP_RANGE)', () => {
    assert.throws(() => new GuestMemoryRegion(G(0x10000), heapBackend(2 * PAGE), { bitmap: new AtomicBitmap(PAGE) }), {
      name: 'RegionError',
      code: 'ERR_REGION_BITMAP_RANGE',
      address: 0x10000,
      length: PAGE,
      expected: 2 * PAGE,
    });
    assert.throws(() => new GuestMemoryRegion(G(0), heapBackend(2 * PAGE), { bitmap: new AtomicBitmap(2 * PAGE - 1) }), {
      code: 'ERR_REGION_BITMAP_RANGE',
      length: 2 * PAGE - 1,
    });
    assert.throws(() => new GuestMemoryRegion(G(0), heapBackend(2 * PAGE), { bitmap: new AtomicBitmap(0) }), { code: 'ERR_REGION_BITMAP_RANGE' });
  });

  test('refuses a slice of a bitmap that ends before the region does', () => {
    const bitmap = new AtomicBitmap(4 * PAGE);
    assert.throws(() => new GuestMemoryRegion(G(0), heapBackend(2 * PAGE), { bitmap: bitmap.sliceAt(3 * PAGE) }), {
      code: 'ERR_REGION_BITMAP_RANGE',
      length: PAGE,
      expected: 2 * PAGE,
    });
    const r = new GuestMemoryRegion(G(0), heapBackend(2 * PAGE), { bitmap: bitmap.sliceAt(2 * PAGE) });
    r.writeU8(MemoryRegionAddress(2 * PAGE - 1), 1);
    assert.equal(bitmap.isBitDirty(3), true, 'the last byte marks the last page of the bitmap');
  });

  test('takes a bitmap that covers the region exactly or more, and bitmaps that do not tell their size', () => {
    const exact = new AtomicBitmap(2 * PAGE);
    const r = new GuestMemoryRegion(G(0), heapBackend(2 * PAGE), { bitmap: exact });
    r.writeU8(MemoryRegionAddress(2 * PAGE - 1), 1);
    assert.equal(exact.isBitDirty(1), true);
    assert.equal(new GuestMemoryRegion(G(0), heapBackend(PAGE), { bitmap: new AtomicBitmap(2 * PAGE) }).length, PAGE);
    assert.equal(new GuestMemoryRegion(G(0), heapBackend(PAGE), { bitmap: new NoopBitmap() }).length, PAGE);
  });

  test('markWritten on a read-only slice is refused (ERR_READ_ONLY)', () => {
    const bitmap = new AtomicBitmap(PAGE);
    const s = new GuestMemoryRegion(G(0), heapBackend(PAGE), { bitmap, readOnly: true }).getSlice(MemoryRegionAddress(0), 16);
    assert.throws(() => s.markWritten(0, 8), { name: 'VolatileMemoryError', code: 'ERR_READ_ONLY', address: 0, length: 8 });
    assert.equal(bitmap.count(), 0);
  });
});
