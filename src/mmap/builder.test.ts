import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { NO_BITMAP } from '../bitmap/bitmap.js';
import { MmapBackend, mmapGuestMemory, PAGE_SIZE } from './index.js';

const G = GuestAddress;
const GIB = 2 ** 30;

describe('mmapGuestMemory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-builder-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a sparse 6 GiB mapping becomes one region per 4 GiB chunk, with a bitmap each', () => {
    using ram = MmapBackend.anonymous(6 * GIB);
    using high = MmapBackend.memfd(PAGE_SIZE);
    const mem = mmapGuestMemory([[G(8 * GIB), high], [G(GIB), ram]], { bitmap: { shared: true } });
    assert.deepEqual(
      mem.regions().map((r) => [r.start, r.length, r.backend]),
      [
        [GIB, 4 * GIB, ram.chunks()[0]],
        [5 * GIB, 2 * GIB, ram.chunks()[1]],
        [8 * GIB, PAGE_SIZE, high.chunks()[0]],
      ],
    );
    for (const r of mem.regions()) {
      assert.ok(r.bitmap instanceof AtomicBitmap && r.bitmap.shared && r.bitmap.byteLength === r.length);
    }
    mem.writeU64LE(G(5 * GIB - 4), 0x1122334455667788n); // straddles the chunks
    assert.equal(mem.readU64LE(G(5 * GIB - 4)), 0x1122334455667788n);
    const dirty = mem.regions().map((r) => (r.bitmap as AtomicBitmap).count());
    assert.deepEqual(dirty, [1, 1, 0], 'both chunks marked the page they got');
  });

  test('untracked by default; private bitmaps with a page size of choice', () => {
    using a = MmapBackend.anonymous(4 * PAGE_SIZE);
    assert.equal(mmapGuestMemory([[G(0), a]]).regions()[0].bitmap, NO_BITMAP);
    const [r] = mmapGuestMemory([[G(0), a]], { bitmap: { pageSize: 2 * PAGE_SIZE } }).regions();
    assert.ok(r.bitmap instanceof AtomicBitmap);
    assert.deepEqual([r.bitmap.shared, r.bitmap.pageCount], [false, 2]);
  });

  test('bitmaps in caller memory: one after the other, 8 bytes per 64 pages', () => {
    using a = MmapBackend.anonymous(65 * PAGE_SIZE);
    using b = MmapBackend.anonymous(PAGE_SIZE);
    using words = MmapBackend.memfd(PAGE_SIZE);
    const mem = mmapGuestMemory([[G(0), a], [G(GIB), b]], { bitmap: { words } });
    assert.deepEqual(
      mem.regions().map((r) => (r.bitmap as AtomicBitmap).backing),
      [{ backend: words, offset: 0 }, { backend: words, offset: 16 }],
    );
    mem.writeU8(G(GIB), 1);
    assert.equal(words.views().u8[16], 1);
    assert.throws(() => mmapGuestMemory([[G(0), a], [G(GIB), b]], { bitmap: { words: sharedBackend(16) } }), {
      name: 'BitmapError',
      code: 'ERR_BITMAP_INVALID',
      address: 16,
    });
  });

  test('two mappings of the same bytes of one file are refused before anything is built', () => {
    const path = join(dir, 'ram');
    writeFileSync(path, new Uint8Array(4 * PAGE_SIZE));
    using a = MmapBackend.file({ path, size: 2 * PAGE_SIZE });
    using b = MmapBackend.file({ path, offset: PAGE_SIZE, size: 2 * PAGE_SIZE });
    using c = MmapBackend.file({ path, offset: 2 * PAGE_SIZE, size: 2 * PAGE_SIZE });
    assert.throws(() => mmapGuestMemory([[G(0), a], [G(0x100000), b]]), {
      name: 'MmapError',
      code: 'ERR_MMAP_OVERLAP',
      address: PAGE_SIZE,
      length: PAGE_SIZE,
    });
    assert.equal(mmapGuestMemory([[G(0), a], [G(0x100000), c]]).numRegions, 2, 'disjoint parts of one file are fine');
  });

  test('read-only: by default over a read-only file, on request over any backend, never undone', () => {
    const path = join(dir, 'rom');
    writeFileSync(path, new Uint8Array(PAGE_SIZE).fill(0xc3));
    using rom = MmapBackend.file({ path, size: PAGE_SIZE, readOnly: true });
    using ram = MmapBackend.anonymous(2 * PAGE_SIZE, { chunkSize: PAGE_SIZE });
    using flash = MmapBackend.memfd(PAGE_SIZE);
    const mem = mmapGuestMemory([[G(0xf0000), rom], [G(0), ram], [G(0x100000), flash, { readOnly: true }]], { bitmap: {} });
    assert.deepEqual(mem.regions().map((r) => r.readOnly), [false, false, true, true]);
    assert.equal(mem.readU32LE(G(0xf0000)), 0xc3c3c3c3);
    for (const addr of [0xf0000, 0x100000]) {
      assert.throws(() => mem.writeU32LE(G(addr), 1), { name: 'GuestMemoryError', code: 'ERR_READ_ONLY', address: addr });
    }
    mem.writeU32LE(G(PAGE_SIZE), 1);
    assert.deepEqual(mem.regions().map((r) => (r.bitmap as AtomicBitmap).count()), [0, 1, 0, 0], 'refused writes mark nothing');
    assert.throws(() => mmapGuestMemory([[G(0), rom, { readOnly: false }]]), { name: 'RegionError', code: 'ERR_REGION_READ_ONLY_BACKEND' });
    assert.throws(() => mmapGuestMemory([[G(0), ram, { readOnly: 1 as never }]]), { name: 'RegionError', code: 'ERR_INVALID_ARG' });
  });

  test('overlapping guest ranges, bad entries, closed backends, bad bitmap options', () => {
    using a = MmapBackend.anonymous(2 * PAGE_SIZE);
    using b = MmapBackend.anonymous(PAGE_SIZE);
    assert.throws(() => mmapGuestMemory([[G(0), a], [G(PAGE_SIZE), b]]), { name: 'GuestMemoryError', code: 'ERR_REGION_OVERLAP' });
    assert.throws(() => mmapGuestMemory([]), { code: 'ERR_NO_REGIONS' });
    for (const bad of [[G(0), {}], [G(0)], 'x', null]) {
      assert.throws(() => mmapGuestMemory([bad as never]), { name: 'MmapError', code: 'ERR_MMAP_INVALID_ARGUMENT' });
    }
    for (const [ranges, options] of [[5, {}], [[[G(0), a]], null], [[[G(0), a]], { bitmap: null }], [[[G(0), a]], { bitmap: 4096 }]]) {
      assert.throws(() => mmapGuestMemory(ranges as never, options as never), { name: 'MmapError', code: 'ERR_MMAP_INVALID_ARGUMENT' });
    }
    assert.throws(() => mmapGuestMemory([[-1 as GuestAddress, a]]), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => mmapGuestMemory([[G(2 ** 53 - PAGE_SIZE), a]]), { code: 'ERR_REGION_OVERFLOW' });
    assert.throws(() => mmapGuestMemory([[G(0), a]], { bitmap: { pageSize: 3 } }), { name: 'BitmapError', code: 'ERR_BITMAP_INVALID' });
    const closed = MmapBackend.anonymous(PAGE_SIZE);
    closed.close();
    assert.throws(() => mmapGuestMemory([[G(0), closed]]), { name: 'BackendError', code: 'ERR_BACKEND_CLOSED' });
  });
});
