import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adoptBackend, heapBackend, sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from './atomic-bitmap.js';

const PAGE = 4096;

describe('AtomicBitmap.inBackend: words in memory another side maps', () => {
  test('the bits are the backend’s bytes, in the KVM log layout; bitmaps side by side stay apart', () => {
    const words = sharedBackend(64);
    const a = AtomicBitmap.inBackend(words, 64 * PAGE);
    const b = AtomicBitmap.inBackend(words, 100 * PAGE, { offset: 8 });
    assert.deepEqual([a.shared, a.backing?.backend, a.backing?.offset, b.backing?.offset], [true, words, 0, 8]);
    a.markDirty(PAGE, 1);
    a.markDirty(63 * PAGE, 1);
    b.markDirty(99 * PAGE, PAGE);
    const bytes = words.views().u8;
    assert.deepEqual(Array.from(bytes.subarray(0, 8)), [2, 0, 0, 0, 0, 0, 0, 0x80], 'pages 1 and 63 of a');
    assert.equal(bytes[8 + 12], 8, 'page 99 of b, in its own words');
    const again = AtomicBitmap.inBackend(words, 64 * PAGE);
    assert.deepEqual([...again.dirtyRanges()], [{ offset: PAGE, length: PAGE }, { offset: 63 * PAGE, length: PAGE }], 'a second bitmap over the words sees them');
    assert.equal(b.harvest().count(), 1);
    assert.equal(b.count(), 0);
    assert.equal(a.count(), 2, 'harvesting b left a alone');
  });

  test('it grows within its words only, and shares through its backend, not by itself', () => {
    const b = AtomicBitmap.inBackend(sharedBackend(16), 10 * PAGE);
    b.grow(64 * PAGE);
    b.markDirty(63 * PAGE, 1);
    assert.throws(() => b.grow(65 * PAGE), { name: 'BitmapError', code: 'ERR_BITMAP_CAPACITY' });
    assert.throws(() => b.share(), { name: 'BitmapError', code: 'ERR_BITMAP_NOT_SHARED', message: /share that backend/ });
  });

  test('memory no one else sees, misaligned or too small words, bad geometry', () => {
    const shared = sharedBackend(16);
    const cases: [string, () => unknown][] = [
      ['heap', () => AtomicBitmap.inBackend(heapBackend(16), PAGE)],
      ['misaligned', () => AtomicBitmap.inBackend(shared, PAGE, { offset: 4 })],
      ['misaligned in its buffer', () => AtomicBitmap.inBackend(adoptBackend(new Uint8Array(new SharedArrayBuffer(64), 1, 32)), PAGE)],
      ['too small', () => AtomicBitmap.inBackend(shared, 129 * PAGE)],
      ['too small at offset', () => AtomicBitmap.inBackend(shared, 65 * PAGE, { offset: 8 })],
      ['page size', () => AtomicBitmap.inBackend(shared, PAGE, { pageSize: 3 })],
    ];
    for (const [what, f] of cases) assert.throws(f, { name: 'BitmapError', code: 'ERR_BITMAP_INVALID' }, what);
    assert.throws(() => AtomicBitmap.inBackend(shared, PAGE, { offset: -8 }), { code: 'ERR_INVALID_ADDRESS' });
    assert.equal(AtomicBitmap.inBackend(shared, PAGE, null as never).backing?.offset, 0, 'null options are the defaults');
  });
});
