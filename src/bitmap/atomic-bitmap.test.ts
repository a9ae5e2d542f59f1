import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AtomicBitmap, DEFAULT_PAGE_SIZE, type DirtyRange } from './atomic-bitmap.js';
import { kvmLog, pagesOf } from '../test-support/bitmap.js';
import type { Bitmap } from './bitmap.js';

const PAGE = 4096;

function rangeIsClean(b: Bitmap, start: number, length: number): boolean {
  for (let offset = start; offset < start + length; offset++) if (b.dirtyAt(offset)) return false;
  return true;
}

function rangeIsDirty(b: Bitmap, start: number, length: number): boolean {
  for (let offset = start; offset < start + length; offset++) if (!b.dirtyAt(offset)) return false;
  return true;
}

describe('AtomicBitmap construction', () => {
  it('covers ceil(byteLength / pageSize) pages, clean, not shared, 4 KiB pages by default', () => {
    const b = new AtomicBitmap(10_000);
    assert.equal(b.pageSize, DEFAULT_PAGE_SIZE);
    assert.equal(b.pageSize, 4096);
    assert.equal(b.byteLength, 10_000);
    assert.equal(b.pageCount, 3);
    assert.equal(b.shared, false);
    assert.equal(b.count(), 0);
    assert.ok(rangeIsClean(b, 0, 10_000));
  });

  it('takes any power-of-two page size from 1 to 2^30', () => {
    assert.equal(new AtomicBitmap(10, { pageSize: 1 }).pageCount, 10);
    assert.equal(new AtomicBitmap(2 ** 31, { pageSize: 2 ** 30 }).pageCount, 2);
    assert.equal(new AtomicBitmap(0).pageCount, 0);
  });

  it('refuses page sizes that are not powers of two in [1, 2^30]', () => {
    for (const pageSize of [0, 3, 4095, 2 ** 31, 1.5, -4096, Number.NaN]) {
      assert.throws(() => new AtomicBitmap(PAGE, { pageSize }), { name: 'BitmapError', code: 'ERR_BITMAP_INVALID' }, String(pageSize));
    }
  });

  it('refuses more than 2^32 pages, reporting the length', () => {
    assert.throws(() => new AtomicBitmap(2 ** 32 + 1, { pageSize: 1 }), {
      code: 'ERR_BITMAP_INVALID',
      length: 2 ** 32 + 1,
    });
  });

  it('refuses lengths that are not non-negative safe integers', () => {
    for (const byteLength of [-1, 1.5, 2 ** 53, Number.NaN]) {
      assert.throws(() => new AtomicBitmap(byteLength), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
    }
  });

  it('refuses a non-boolean shared and a maxByteLength it cannot use', () => {
    assert.throws(() => new AtomicBitmap(PAGE, { shared: 'yes' as unknown as boolean }), { code: 'ERR_BITMAP_INVALID' });
    assert.throws(() => new AtomicBitmap(PAGE, { maxByteLength: 2 * PAGE }), { code: 'ERR_BITMAP_INVALID' });
    assert.throws(() => new AtomicBitmap(2 * PAGE, { shared: true, maxByteLength: PAGE }), {
      code: 'ERR_BITMAP_INVALID',
      length: PAGE,
    });
    assert.throws(() => new AtomicBitmap(PAGE, { shared: true, maxByteLength: -1 }), { code: 'ERR_INVALID_ADDRESS' });
  });
});

describe('AtomicBitmap marking', () => {
  it('is clean before and dirty after on exactly the marked pages, also through a slice (vm-memory test_bitmap)', () => {
    const b = new AtomicBitmap(0x800, { pageSize: 0x80 });
    const s = b.sliceAt(0x400);
    assert.ok(rangeIsClean(b, 0, 0x800));
    assert.ok(rangeIsClean(s, 0, 0x100));
    b.markDirty(0x400, 0x100);
    assert.ok(rangeIsDirty(b, 0x400, 0x100));
    assert.ok(rangeIsDirty(s, 0, 0x100));
    assert.ok(rangeIsClean(b, 0, 0x400));
    assert.ok(rangeIsClean(b, 0x500, 0x300));
    assert.deepEqual(pagesOf(b), [8, 9]);
  });

  it('sets both pages for a mark that straddles a page boundary', () => {
    const b = new AtomicBitmap(4 * PAGE);
    b.markDirty(PAGE - 4, 8);
    assert.deepEqual(pagesOf(b), [0, 1]);
  });

  it('sets only its own page for a 1-byte mark at the last byte of a page', () => {
    const b = new AtomicBitmap(4 * PAGE);
    b.markDirty(2 * PAGE - 1, 1);
    assert.deepEqual(pagesOf(b), [1]);
    assert.equal(b.dirtyAt(2 * PAGE - 1), true);
    assert.equal(b.dirtyAt(2 * PAGE), false);
  });

  it('sets every page of a long mark, across 32-bit words', () => {
    const b = new AtomicBitmap(100 * PAGE);
    b.markDirty(30 * PAGE + 1, 40 * PAGE);
    assert.deepEqual(pagesOf(b), Array.from({ length: 41 }, (_, i) => 30 + i));
  });

  it('marks nothing for a zero length, even at the very end', () => {
    const b = new AtomicBitmap(2 * PAGE);
    b.markDirty(PAGE, 0);
    b.markDirty(2 * PAGE, 0);
    assert.equal(b.count(), 0);
  });

  it('marks the last, partial page of a length that is not a page multiple', () => {
    const b = new AtomicBitmap(PAGE + 10);
    b.markDirty(PAGE + 9, 1);
    assert.deepEqual(pagesOf(b), [1]);
  });

  it('refuses a mark that ends beyond the bitmap, reporting offset and length, and marks nothing', () => {
    const b = new AtomicBitmap(2 * PAGE);
    assert.throws(() => b.markDirty(2 * PAGE - 4, 8), {
      name: 'BitmapError',
      code: 'ERR_BITMAP_OUT_OF_RANGE',
      address: 2 * PAGE - 4,
      length: 8,
    });
    assert.throws(() => b.markDirty(2 * PAGE + 1, 0), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 2 * PAGE + 1, length: 0 });
    assert.equal(b.count(), 0);
  });

  it('refuses offsets and lengths that are not non-negative safe integers', () => {
    const b = new AtomicBitmap(2 * PAGE);
    for (const [offset, length] of [[-1, 1], [1.5, 1], [0, 0.5], [0, -1], [Number.NaN, 1], [0, Number.NaN], [0, Infinity]]) {
      assert.throws(() => b.markDirty(offset, length), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' }, `${offset}, ${length}`);
    }
    assert.equal(b.count(), 0);
  });

  it('marks the same bits, with plain or atomic writes, whether shared or not', () => {
    for (const shared of [false, true]) {
      const b = new AtomicBitmap(64 * PAGE, { shared });
      b.markDirty(5 * PAGE, 8);
      b.markDirty(40 * PAGE + 7, 1);
      assert.deepEqual(pagesOf(b), [5, 40]);
    }
  });

  it('tracks offsets beyond 4 GiB exactly, also across the 4 GiB line', () => {
    const b = new AtomicBitmap(2 ** 33);
    const page4g = 2 ** 32 / PAGE;
    b.markDirty(2 ** 32 - 4, 8);
    b.markDirty(2 ** 32 + 3 * PAGE + 100, 8);
    b.markDirty(2 ** 33 - 1, 1);
    assert.equal(b.count(), 4);
    for (const p of [page4g - 1, page4g, page4g + 3, b.pageCount - 1]) assert.equal(b.isBitDirty(p), true, String(p));
    assert.equal(b.dirtyAt(2 ** 32 + 3 * PAGE), true);
    assert.equal(b.dirtyAt(2 ** 32 + 2 * PAGE), false);
    assert.throws(() => b.markDirty(2 ** 33 - 1, 2), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 2 ** 33 - 1 });
    b.resetRange(2 ** 32, PAGE);
    assert.equal(b.isBitDirty(page4g), false);
    assert.equal(b.count(), 3);
  });
});

describe('AtomicBitmap queries', () => {
  it('dirtyAt and isBitDirty refuse what lies beyond the bitmap', () => {
    const b = new AtomicBitmap(PAGE + 10);
    assert.throws(() => b.dirtyAt(PAGE + 10), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: PAGE + 10 });
    assert.throws(() => b.dirtyAt(-1), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => b.isBitDirty(2), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 2 * PAGE });
    assert.throws(() => b.isBitDirty(0.5), { code: 'ERR_INVALID_ADDRESS' });
  });

  it('counts dirty pages', () => {
    const b = new AtomicBitmap(200 * PAGE);
    b.markDirty(0, 1);
    b.markDirty(31 * PAGE, 2 * PAGE); // pages 31, 32
    b.markDirty(199 * PAGE, PAGE);
    assert.equal(b.count(), 4);
  });

  it('lists maximal runs in bytes, across words, cutting the last page at byteLength', () => {
    const b = new AtomicBitmap(70 * PAGE + 100);
    b.markDirty(0, 1);
    b.markDirty(2 * PAGE, 3 * PAGE); // pages 2..4
    b.markDirty(30 * PAGE, 40 * PAGE + 1); // pages 30..70, 70 being the partial last one
    const ranges: DirtyRange[] = [...b.dirtyRanges()];
    assert.deepEqual(ranges, [
      { offset: 0, length: PAGE },
      { offset: 2 * PAGE, length: 3 * PAGE },
      { offset: 30 * PAGE, length: 40 * PAGE + 100 },
    ]);
  });

  it('lists a run of whole words and an empty bitmap', () => {
    const b = new AtomicBitmap(128 * PAGE);
    assert.deepEqual([...b.dirtyRanges()], []);
    b.markDirty(32 * PAGE, 64 * PAGE);
    assert.deepEqual([...b.dirtyRanges()], [{ offset: 32 * PAGE, length: 64 * PAGE }]);
  });
});

describe('AtomicBitmap resetting and harvesting', () => {
  it('resetRange clears every page the range touches, and only those', () => {
    const b = new AtomicBitmap(10 * PAGE);
    b.markDirty(0, 10 * PAGE);
    b.resetRange(2 * PAGE + 1, PAGE); // touches pages 2 and 3
    assert.deepEqual(pagesOf(b), [0, 1, 4, 5, 6, 7, 8, 9]);
    b.resetRange(0, 0);
    assert.equal(b.count(), 8);
  });

  it('resetRange refuses a range beyond the bitmap and bad numbers', () => {
    const b = new AtomicBitmap(2 * PAGE);
    b.markDirty(0, 2 * PAGE);
    assert.throws(() => b.resetRange(PAGE, PAGE + 1), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: PAGE, length: PAGE + 1 });
    assert.throws(() => b.resetRange(0, -1), { code: 'ERR_INVALID_ADDRESS' });
    assert.equal(b.count(), 2);
  });

  it('resetAll clears everything', () => {
    const b = new AtomicBitmap(100 * PAGE, { shared: true });
    b.markDirty(0, 100 * PAGE);
    b.resetAll();
    assert.equal(b.count(), 0);
  });

  it('harvest returns the dirty pages as a non-shared bitmap and leaves the source clean', () => {
    const b = new AtomicBitmap(100 * PAGE + 5, { shared: true });
    b.markDirty(3 * PAGE, 1);
    b.markDirty(63 * PAGE, 2 * PAGE);
    b.markDirty(100 * PAGE, 5);
    const taken = b.harvest();
    assert.equal(taken.shared, false);
    assert.equal(taken.byteLength, b.byteLength);
    assert.equal(taken.pageSize, b.pageSize);
    assert.deepEqual(pagesOf(taken), [3, 63, 64, 100]);
    assert.equal(b.count(), 0);
    assert.equal(b.harvest().count(), 0);
    b.markDirty(3 * PAGE, 1);
    assert.deepEqual(pagesOf(b.harvest()), [3]);
  });
});

describe('AtomicBitmap slices', () => {
  it('see and set the same bits, and compose', () => {
    const b = new AtomicBitmap(16 * PAGE);
    const s = b.sliceAt(2 * PAGE + 16);
    const ss = s.sliceAt(PAGE);
    ss.markDirty(PAGE, 1); // root offset 4 * PAGE + 16
    assert.deepEqual(pagesOf(b), [4]);
    assert.equal(s.dirtyAt(2 * PAGE), true);
    assert.equal(ss.dirtyAt(PAGE - 16), true); // root 4 * PAGE
    assert.equal(ss.dirtyAt(PAGE - 17), false); // root 4 * PAGE - 1
    b.markDirty(15 * PAGE, 1);
    assert.equal(ss.dirtyAt(12 * PAGE - 16), true);
  });

  it('allow an empty slice at the end and refuse one beyond', () => {
    const b = new AtomicBitmap(2 * PAGE);
    const end = b.sliceAt(2 * PAGE);
    end.markDirty(0, 0);
    assert.throws(() => end.dirtyAt(0), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 0 });
    assert.throws(() => b.sliceAt(2 * PAGE + 1), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 2 * PAGE + 1 });
    assert.throws(() => b.sliceAt(-1), { code: 'ERR_INVALID_ADDRESS' });
  });

  it('report errors in their own offsets', () => {
    const b = new AtomicBitmap(4 * PAGE);
    const s = b.sliceAt(PAGE);
    assert.throws(() => s.markDirty(3 * PAGE - 4, 8), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 3 * PAGE - 4, length: 8 });
    assert.throws(() => s.markDirty(-1, 2), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => s.markDirty(0.5, 2), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => s.markDirty(0, -1), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => s.dirtyAt(3 * PAGE), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 3 * PAGE });
    assert.throws(() => s.sliceAt(3 * PAGE + 1), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 3 * PAGE + 1 });
    assert.equal(b.count(), 0);
  });

  it('follow their bitmap when it grows', () => {
    const b = new AtomicBitmap(2 * PAGE);
    const s = b.sliceAt(PAGE);
    b.grow(4 * PAGE);
    s.markDirty(2 * PAGE, 1);
    assert.deepEqual(pagesOf(b), [3]);
  });
});

describe('AtomicBitmap.merge', () => {
  it('ORs in a KVM dirty log given as little-endian bytes', () => {
    const b = new AtomicBitmap(130 * PAGE);
    b.markDirty(1 * PAGE, 1);
    const log = kvmLog(3, [0, 7, 8, 31, 32, 63, 64, 100, 129]);
    // bit 8 is the lowest bit of byte 1, bit 64 the lowest of the second word
    assert.equal(log[1], 0b1);
    assert.equal(log[8], 0b1);
    b.merge(log);
    assert.deepEqual(pagesOf(b), [0, 1, 7, 8, 31, 32, 63, 64, 100, 129]);
  });

  it('takes a BigUint64Array, an ArrayBuffer and a byte view at an offset alike', () => {
    const pages = [0, 33, 64, 95];
    const words = new BigUint64Array([(1n << 0n) | (1n << 33n), (1n << 0n) | (1n << 31n)]);
    const bytes = kvmLog(2, pages);
    const padded = new Uint8Array(24);
    padded.set(bytes, 8);
    for (const log of [words, bytes.buffer, padded.subarray(8)]) {
      const b = new AtomicBitmap(96 * PAGE);
      b.merge(log);
      assert.deepEqual(pagesOf(b), pages);
    }
  });

  it('accepts a longer log whose extra bits are clean', () => {
    const b = new AtomicBitmap(200 * PAGE);
    b.merge(kvmLog(8, [5, 199]));
    assert.deepEqual(pagesOf(b), [5, 199]);
  });

  it('refuses a log shorter than its pages, empty included, merging nothing', () => {
    const b = new AtomicBitmap(200 * PAGE); // 200 pages: 4 words
    for (const words of [0, 1, 3]) {
      assert.throws(() => b.merge(kvmLog(words, words > 0 ? [5] : [])), {
        name: 'BitmapError',
        code: 'ERR_BITMAP_LOG_TOO_SHORT',
        length: words * 8,
        expected: 32,
      });
    }
    assert.equal(b.count(), 0);
    b.merge(kvmLog(4, [5])); // exactly the words needed
    assert.deepEqual(pagesOf(b), [5]);
    new AtomicBitmap(0).merge(new Uint8Array(0)); // no pages: an empty log covers them
  });

  it('refuses a log that marks pages beyond the bitmap, merging nothing', () => {
    const b = new AtomicBitmap(70 * PAGE);
    b.markDirty(0, 1);
    assert.throws(() => b.merge(kvmLog(2, [3, 70])), {
      name: 'BitmapError',
      code: 'ERR_BITMAP_OUT_OF_RANGE',
      address: 70 * PAGE,
      length: 16,
    });
    assert.throws(() => b.merge(kvmLog(4, [3, 200])), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 200 * PAGE });
    assert.deepEqual(pagesOf(b), [0]);
    assert.throws(() => new AtomicBitmap(0).merge(kvmLog(1, [0])), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 0 });
  });

  it('refuses what is not a log of whole 64-bit words', () => {
    const b = new AtomicBitmap(64 * PAGE);
    assert.throws(() => b.merge(new Uint8Array(12)), { code: 'ERR_BITMAP_INVALID', length: 12 });
    assert.throws(() => b.merge(new Uint32Array(2) as unknown as Uint8Array), { code: 'ERR_BITMAP_INVALID' });
    assert.throws(() => b.merge([1, 2] as unknown as Uint8Array), { code: 'ERR_BITMAP_INVALID' });
  });
});

describe('AtomicBitmap sharing', () => {
  it('shares its words through a structured-clonable description', () => {
    const a = new AtomicBitmap(100 * PAGE, { shared: true });
    const description = structuredClone(a.share());
    assert.equal(description.byteLength, 100 * PAGE);
    assert.equal(description.pageSize, PAGE);
    const b = AtomicBitmap.fromShared(description);
    assert.equal(b.shared, true);
    a.markDirty(10 * PAGE, 1);
    b.markDirty(90 * PAGE, 1);
    assert.deepEqual(pagesOf(a), [10, 90]);
    assert.deepEqual(pagesOf(b.harvest()), [10, 90]);
    assert.equal(a.count(), 0);
  });

  it('refuses to share a non-shared bitmap', () => {
    assert.throws(() => new AtomicBitmap(PAGE).share(), { name: 'BitmapError', code: 'ERR_BITMAP_NOT_SHARED' });
  });

  it('refuses a description it cannot use', () => {
    const ok = new AtomicBitmap(64 * PAGE, { shared: true }).share();
    const bad: unknown[] = [
      null,
      { ...ok, words: new ArrayBuffer(8) },
      { ...ok, byteLength: 65 * PAGE }, // needs a second 64-bit word
      { ...ok, pageSize: 3 },
      { ...ok, pageSize: undefined },
    ];
    for (const description of bad) {
      assert.throws(() => AtomicBitmap.fromShared(description as never), { code: 'ERR_BITMAP_INVALID' });
    }
    assert.throws(() => AtomicBitmap.fromShared({ ...ok, byteLength: -1 }), { code: 'ERR_INVALID_ADDRESS' });
  });
});

describe('AtomicBitmap.grow', () => {
  it('keeps every bit of a non-shared bitmap, and the new pages start clean', () => {
    const b = new AtomicBitmap(40 * PAGE);
    b.markDirty(0, 1);
    b.markDirty(39 * PAGE, 1);
    b.grow(1000 * PAGE + 1);
    assert.equal(b.pageCount, 1001);
    assert.deepEqual(pagesOf(b), [0, 39]);
    b.markDirty(1000 * PAGE, 1);
    assert.equal(b.count(), 3);
    b.grow(1000 * PAGE + 1); // same length: nothing to do
    assert.equal(b.count(), 3);
  });

  it('refuses to shrink, or to pass 2^32 pages', () => {
    const b = new AtomicBitmap(4 * PAGE);
    assert.throws(() => b.grow(3 * PAGE), { code: 'ERR_BITMAP_INVALID', length: 3 * PAGE });
    assert.throws(() => b.grow(2 ** 32 * PAGE + 1), { code: 'ERR_BITMAP_INVALID' });
    assert.throws(() => b.grow(1.5), { code: 'ERR_INVALID_ADDRESS' });
    assert.equal(b.byteLength, 4 * PAGE);
  });

  it('lets a shared bitmap grow in place within its capacity, and no further', () => {
    const a = new AtomicBitmap(10 * PAGE, { shared: true });
    a.markDirty(9 * PAGE, 1);
    a.grow(64 * PAGE); // still inside the first 64-bit word
    a.markDirty(63 * PAGE, 1);
    assert.deepEqual(pagesOf(a), [9, 63]);
    assert.throws(() => a.grow(65 * PAGE), { name: 'BitmapError', code: 'ERR_BITMAP_CAPACITY', length: 65 * PAGE });
    assert.equal(a.byteLength, 64 * PAGE);
  });

  it('grows reserved shared words in place, so that every holder keeps the same bits', () => {
    const a = new AtomicBitmap(40 * PAGE, { shared: true, maxByteLength: 1000 * PAGE });
    const b = AtomicBitmap.fromShared(a.share()); // as another worker would
    a.markDirty(39 * PAGE, 1);
    a.grow(500 * PAGE);
    a.markDirty(45 * PAGE, 1); // same 32-bit word as b's last pages
    a.markDirty(499 * PAGE, 1);

    // b has not heard of the growth yet: it refuses the new pages and leaves their bits alone.
    assert.throws(() => b.markDirty(45 * PAGE, 1), { code: 'ERR_BITMAP_OUT_OF_RANGE' });
    assert.equal(b.count(), 1);
    assert.deepEqual(pagesOf(b.harvest()), [39]);
    b.resetAll();
    assert.deepEqual(pagesOf(a), [45, 499]);

    b.grow(500 * PAGE);
    assert.deepEqual(pagesOf(b), [45, 499]);
    b.markDirty(200 * PAGE, 1);
    assert.deepEqual(pagesOf(a), [45, 200, 499]);
    // Capacity comes in whole 64-bit words: 1000 pages reserve 1024.
    a.grow(1024 * PAGE);
    assert.throws(() => a.grow(1025 * PAGE), { code: 'ERR_BITMAP_CAPACITY' });
  });

  it('carries reserved capacity to a bitmap rebuilt from a description', () => {
    const a = new AtomicBitmap(PAGE, { shared: true, maxByteLength: 200 * PAGE });
    const b = AtomicBitmap.fromShared(structuredClone(a.share()));
    b.grow(200 * PAGE);
    b.markDirty(199 * PAGE, 1);
    a.grow(200 * PAGE);
    assert.deepEqual(pagesOf(a), [199]);
  });
});
