import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { checkNoFileOverlap, deferChunkViews, MAX_CHUNK_SIZE, MmapBackend, mmapGuestMemory, PAGE_SIZE } from './index.js';
import { smapsAt } from './test-support/proc.js';

const GiB = 2 ** 30;

describe('memory above the 4 GiB ArrayBuffer cap', () => {
  test('a sparse 6 GiB mapping is two chunks, written at the start, across the boundary and at the end', () => {
    assert.equal(MAX_CHUNK_SIZE, 4 * GiB);
    using b = MmapBackend.anonymous(6 * GiB);
    const chunks = b.chunks();
    assert.deepEqual(
      chunks.map((c) => [c.offset, c.size]),
      [
        [0, 4 * GiB],
        [4 * GiB, 2 * GiB],
      ],
    );
    assert.throws(() => b.views(), { name: 'BackendError', code: 'ERR_BACKEND_SIZE' });
    const [low, high] = chunks.map((c) => c.views());
    assert.equal(low.u8.length, 4 * GiB);
    assert.equal(high.u8.length, 2 * GiB);
    low.u8[0] = 1;
    low.dv.setUint32(4 * GiB - 4, 0x11223344, true); // the last word below the boundary
    high.dv.setUint32(0, 0x55667788, true); // the first word above it
    high.u8[2 * GiB - 1] = 0xfe; // the last byte
    assert.equal(low.u8[0], 1);
    assert.equal(low.u8[4 * GiB - 1], 0x11);
    assert.equal(high.u8[0], 0x88);
    assert.equal(high.u8[2 * GiB - 1], 0xfe);
    assert.equal(high.u8[12345], 0);
    assert.ok((smapsAt(b.address)?.fields.get('Rss') ?? Infinity) < 64 << 20, 'still sparse');
    b.close();
    assert.equal(low.u8.length, 0);
    assert.equal(high.u8.length, 0);
    assert.throws(() => chunks[1].views(), { code: 'ERR_BACKEND_CLOSED' });
  });

  test('the chunks are consecutive views of one memory: a mapping across the boundary sees both', () => {
    using m = MmapBackend.memfd(6 * GiB);
    const [low, high] = m.chunks().map((c) => c.views());
    low.u8[4 * GiB - 1] = 0xaa;
    high.u8[0] = 0xbb;
    using across = MmapBackend.file({ fd: m.fd, offset: 4 * GiB - PAGE_SIZE, size: 2 * PAGE_SIZE });
    assert.deepEqual(Array.from(across.views().u8.subarray(PAGE_SIZE - 1, PAGE_SIZE + 1)), [0xaa, 0xbb]);
    assert.deepEqual(
      m.chunks().map((c) => c.file?.start),
      [0, 4 * GiB],
    );
    checkNoFileOverlap(m.chunks());
    assert.throws(() => checkNoFileOverlap([...m.chunks(), across]), { code: 'ERR_MMAP_OVERLAP', address: 4 * GiB - PAGE_SIZE });
  });
});

describe('chunkSize', () => {
  test('splits memory into chunks of that size, the last one shorter', () => {
    using b = MmapBackend.memfd(5 * PAGE_SIZE, { chunkSize: 2 * PAGE_SIZE });
    assert.equal(b.chunkSize, 2 * PAGE_SIZE);
    const chunks = b.chunks();
    assert.deepEqual(
      chunks.map((c) => [c.offset, c.size, c.byteOffset, c.kind, c.shared, c.backend === b]),
      [
        [0, 2 * PAGE_SIZE, 0, 'mmap', true, true],
        [2 * PAGE_SIZE, 2 * PAGE_SIZE, 0, 'mmap', true, true],
        [4 * PAGE_SIZE, PAGE_SIZE, 0, 'mmap', true, true],
      ],
    );
    assert.equal(chunks[1].views(), chunks[1].views(), 'views are made once');
    chunks[2].views().u8[0] = 3;
    using whole = MmapBackend.file({ fd: b.fd, size: 5 * PAGE_SIZE });
    assert.equal(whole.views().u8[4 * PAGE_SIZE], 3);
    assert.equal(whole.chunks().length, 1);
    assert.equal(whole.chunks()[0].views(), whole.views());
    assert.equal(MmapBackend.fromShared(b.share()).chunks().length, 3, 'a rebuilt backend keeps the chunking');
  });
});

describe('chunk views made on first use', () => {
  test('inside deferChunkViews the named chunks answer empty views until made; others, and made ones, are real', () => {
    using a = MmapBackend.anonymous(8 * GiB);
    using other = MmapBackend.anonymous(PAGE_SIZE);
    const [first, second] = a.chunks();
    const made = first.views();
    deferChunkViews(a.chunks(), () => {
      assert.equal(first.views(), made);
      assert.equal(second.views().u8.length, 0);
      assert.equal(other.views().u8.length, PAGE_SIZE);
    });
    assert.equal(second.views().u8.length, 4 * GiB);
    a.close();
    assert.throws(() => deferChunkViews(a.chunks(), () => second.views()), { code: 'ERR_BACKEND_CLOSED' });
  });

  test('mmapGuestMemory wraps a chunk when its region is first used', () => {
    using ram = MmapBackend.memfd(64 * GiB);
    const before = process.memoryUsage().external;
    const mem = mmapGuestMemory([[GuestAddress(0), ram]]);
    assert.equal(mem.numRegions, 16);
    assert.ok(process.memoryUsage().external - before < 4 * GiB, 'no chunk wrapped');
    mem.writeU8(GuestAddress(40 * GiB + 5), 9);
    assert.equal(ram.chunks()[10].views().u8[5], 9);
    // Within 16 MiB of 4 GiB: other small external buffers come and go meanwhile.
    assert.ok(Math.abs(process.memoryUsage().external - before - 4 * GiB) < 2 ** 24, 'one chunk wrapped');
  });
});
