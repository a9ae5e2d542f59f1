/**
 * Typed writes into a region (or a slice of one) over a non-shared AtomicBitmap store byte marks
 * that the bitmap folds into its bits whenever it is read: every reader sees every mark.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GuestAddress, MemoryRegionAddress } from '../address/address.js';
import { heapBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import type { Bitmap } from '../bitmap/bitmap.js';
import { VolatileSlice } from '../volatile/slice.js';
import { GuestMemoryRegion } from './region.js';

const PAGE = 4096;
const R = MemoryRegionAddress;

function tracked(pages: number, bitmap = new AtomicBitmap(pages * PAGE)): [GuestMemoryRegion, AtomicBitmap] {
  return [new GuestMemoryRegion(GuestAddress(0x10000), heapBackend(pages * PAGE), { bitmap }), bitmap];
}

function pages(b: AtomicBitmap): number[] {
  const out: number[] = [];
  for (let p = 0; p < b.pageCount; p++) if (b.isBitDirty(p)) out.push(p);
  return out;
}

describe('byte marks of typed writes', () => {
  test('every reader sees them: dirtyAt, isBitDirty, count, dirtyRanges, harvest', () => {
    const [region, b] = tracked(8);
    region.writeU32LE(R(3 * PAGE + 8), 1);
    assert.equal(b.dirtyAt(3 * PAGE), true);
    assert.equal(region.bitmap.dirtyAt(3 * PAGE + 4095), true);
    assert.deepEqual(pages(b), [3]);
    assert.equal(b.count(), 1);
    region.writeU64LE(R(5 * PAGE), 2n);
    assert.deepEqual([...b.dirtyRanges()], [
      { offset: 3 * PAGE, length: PAGE },
      { offset: 5 * PAGE, length: PAGE },
    ]);
    assert.deepEqual(pages(b.harvest()), [3, 5]);
    assert.equal(b.count(), 0, 'the harvest took the marks too');
    region.writeU8(R(7 * PAGE), 1);
    assert.deepEqual(pages(b.harvest()), [7], 'a mark after a harvest is in the next one, alone');
  });

  test('a value across a page boundary marks both pages', () => {
    const [region, b] = tracked(4);
    region.writeU64LE(R(2 * PAGE - 4), 0x1122334455667788n);
    assert.deepEqual(pages(b), [1, 2]);
  });

  test('values larger than a page (small pages) mark every page they touch', () => {
    const b = new AtomicBitmap(64, { pageSize: 4 });
    const region = new GuestMemoryRegion(GuestAddress(0), heapBackend(64), { bitmap: b });
    region.writeU64LE(R(6), 1n); // bytes 6..13: pages 1, 2 and 3
    assert.deepEqual(pages(b), [1, 2, 3]);
  });

  test('resetRange and resetAll clear marks not yet folded', () => {
    const [region, b] = tracked(4);
    region.writeU32LE(R(0), 1);
    region.writeU32LE(R(PAGE), 1);
    b.resetRange(0, PAGE);
    assert.deepEqual(pages(b), [1]);
    region.writeU32LE(R(2 * PAGE), 1);
    b.resetAll();
    assert.equal(b.count(), 0);
  });

  test('marks survive grow, and the grown bitmap keeps taking them', () => {
    const [region, b] = tracked(2);
    region.writeU16LE(R(PAGE), 1);
    b.grow(200 * PAGE);
    assert.deepEqual(pages(b), [1]);
    region.writeU16LE(R(0), 1);
    assert.deepEqual(pages(b), [0, 1]);
  });

  test('a region over a slice of a bitmap marks at the slice offset, also when it is not page-aligned', () => {
    const root = new AtomicBitmap(16 * PAGE);
    const region = new GuestMemoryRegion(GuestAddress(0), heapBackend(4 * PAGE), { bitmap: root.sliceAt(10 * PAGE + 100) });
    region.writeU32LE(R(0), 1); // root byte 10 * PAGE + 100: page 10
    region.writeU32LE(R(PAGE - 100), 1); // root byte 11 * PAGE: page 11
    assert.deepEqual(pages(root), [10, 11]);
    const slice = region.getSlice(R(2 * PAGE), 8); // root byte 12 * PAGE + 100
    slice.writeU32LE(4, 1);
    assert.deepEqual(pages(root), [10, 11, 12]);
  });

  test('a slice over a bitmap that ends before it still throws ERR_BITMAP_OUT_OF_RANGE at the mark', () => {
    const b: Bitmap = new AtomicBitmap(PAGE);
    const slice = new VolatileSlice(new Uint8Array(2 * PAGE), b);
    slice.writeU32LE(PAGE - 4, 1);
    assert.equal(b.dirtyAt(0), true);
    assert.throws(() => slice.writeU32LE(PAGE, 1), { name: 'BitmapError', code: 'ERR_BITMAP_OUT_OF_RANGE' });
  });

  test('a shared bitmap takes typed-write marks in its bits at once (other workers read them)', () => {
    const b = new AtomicBitmap(4 * PAGE, { shared: true });
    const region = new GuestMemoryRegion(GuestAddress(0), heapBackend(4 * PAGE), { bitmap: b });
    region.writeU32LE(R(2 * PAGE), 1);
    const words = new Int32Array(b.share().words);
    assert.equal(words[0], 1 << 2);
  });
});
