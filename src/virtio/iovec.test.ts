/**
 * IoVecBuffer / IoVecBufferMut: the reference's cases (access mode, lengths, read/write at
 * offsets, PartialBuffer / OutOfBounds), the multi-chain ring, undo of a broken chain, dirty
 * marking, and zero-copy fd I/O with EINTR and partial transfers.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { heapBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { fsCalls } from '../bytes/fd-io.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { pagesOf } from '../test-support/bitmap.js';
import { type DescriptorChain, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from './chain.js';
import { IOV_MAX, IoVecBuffer, IoVecBufferMut, splitChain } from './iovec.js';
import { G, setup, trackedMemory, virtioError } from './test-support/setup.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-iovec-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const bytes = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

/** The reference's chain: four 64-byte descriptors at 0x20000, readable (0..255) or writable. */
function fourChain(writable: boolean) {
  const s = setup();
  const parts = [0, 1, 2, 3].map((j) => bytes(64, 64 * j));
  const posted = writable ? s.drv.post([], [64, 64, 64, 64]) : s.drv.post(parts, []);
  return { ...s, posted, chain: s.q.pop() as DescriptorChain };
}

describe('IoVecBuffer', () => {
  test('access mode: readable chains only (ERR_IOVEC_WRITE_ONLY)', () => {
    assert.equal(IoVecBuffer.fromChain(fourChain(false).chain).viewCount, 4);
    assert.throws(() => IoVecBuffer.fromChain(fourChain(true).chain), virtioError('ERR_IOVEC_WRITE_ONLY', { index: 0 }));
  });

  test('length is the sum of the descriptors', () => {
    assert.equal(IoVecBuffer.fromChain(fourChain(false).chain).length, 256);
  });

  test('readAt / readExactAt across descriptors; PartialBuffer and OutOfBounds', () => {
    const iov = IoVecBuffer.fromChain(fourChain(false).chain);
    const big = new Uint8Array(257);
    assert.equal(iov.readAt(0, big), 256);
    assert.deepEqual(big.subarray(0, 256), bytes(256));
    assert.equal(big[256], 0);

    const buf = new Uint8Array(5);
    iov.readExactAt(0, buf.subarray(0, 4));
    assert.deepEqual(buf, Uint8Array.of(0, 1, 2, 3, 0));
    iov.readExactAt(0, buf);
    assert.deepEqual(buf, Uint8Array.of(0, 1, 2, 3, 4));
    iov.readExactAt(1, buf);
    assert.deepEqual(buf, Uint8Array.of(1, 2, 3, 4, 5));
    iov.readExactAt(60, buf);
    assert.deepEqual(buf, Uint8Array.of(60, 61, 62, 63, 64));
    assert.equal(iov.readAt(252, buf), 4);
    assert.deepEqual(buf.subarray(0, 4), Uint8Array.of(252, 253, 254, 255));
    assert.throws(() => iov.readExactAt(252, buf), virtioError('ERR_IOVEC_PARTIAL_BUFFER', { expected: 5, completed: 4 }));
    assert.throws(() => iov.readExactAt(256, buf), virtioError('ERR_IOVEC_OUT_OF_BOUNDS', { address: 256 }));
    assert.equal(iov.readAt(256, buf), 0);
  });

  test('fromBytes wraps plain arrays', () => {
    const iov = IoVecBuffer.fromBytes([bytes(3), bytes(2, 3)]);
    const out = new Uint8Array(5);
    iov.readExactAt(0, out);
    assert.deepEqual(out, bytes(5));
  });

  test('building marks nothing dirty', () => {
    const { mem, bitmaps } = trackedMemory();
    const { drv, q } = setup(16, { mem, dataBase: 0x8000, dataSize: 0x10000 });
    drv.post([bytes(0x3000)], []);
    for (const b of bitmaps) b.resetAll();
    IoVecBuffer.fromChain(q.pop() as DescriptorChain);
    assert.deepEqual(bitmaps.map(pagesOf), [[], []]);
  });
  test('views() is a frozen copy: changing it cannot change the buffer', () => {
    const iov = IoVecBuffer.fromChain(fourChain(false).chain);
    const views = iov.views() as Uint8Array[];
    assert.ok(Object.isFrozen(views));
    assert.throws(() => views.push(new Uint8Array(100)), TypeError);
    assert.throws(() => {
      views[0] = new Uint8Array(100);
    }, TypeError);
    assert.equal(iov.readAt(0, new Uint8Array(356)), 256, 'the buffer still holds its 256 bytes');
    assert.equal(iov.viewCount, 4);
  });
});

describe('IoVecBufferMut', () => {
  test('access mode: writable chains only (ERR_IOVEC_READ_ONLY)', () => {
    assert.equal(IoVecBufferMut.fromChain(fourChain(true).chain).viewCount, 4);
    assert.throws(() => IoVecBufferMut.fromChain(fourChain(false).chain), virtioError('ERR_IOVEC_READ_ONLY', { index: 0 }));
  });

  test('length, and appending a second chain', () => {
    const a = fourChain(true);
    const one = IoVecBufferMut.fromChain(a.chain);
    assert.deepEqual([one.length, one.capacity], [256, 4]);
    assert.throws(() => one.appendChain(fourChain(true).chain), virtioError('ERR_IOVEC_FULL'));
    const iov = new IoVecBufferMut();
    iov.appendChain(fourChain(true).chain);
    const parsed = iov.appendChain(fourChain(true).chain);
    assert.deepEqual(parsed, { head: a.chain.head, length: 256, viewCount: 4 });
    assert.equal(iov.length, 512);
    assert.equal(iov.chainCount, 2);
  });

  test('writeAt / writeAllAt across descriptors; PartialBuffer and OutOfBounds write nothing', () => {
    const { chain, mem, posted } = fourChain(true);
    const iov = IoVecBufferMut.fromChain(chain);
    const guest = () => {
      const out = new Uint8Array(256);
      mem.readSlice(posted.writable[0].addr, out);
      return out;
    };
    const model = new Uint8Array(256);
    const buf = Uint8Array.of(0, 1, 2, 3, 4);
    iov.writeAllAt(0, buf.subarray(0, 3));
    model.set(buf.subarray(0, 3), 0);
    assert.deepEqual(guest(), model);
    iov.writeAllAt(1, buf);
    model.set(buf, 1);
    iov.writeAllAt(60, buf); // 4 bytes in the first descriptor, 1 in the second
    model.set(buf, 60);
    assert.deepEqual(guest(), model);
    assert.equal(iov.writeAt(252, buf), 4);
    model.set(buf.subarray(0, 4), 252);
    assert.deepEqual(guest(), model);
    assert.throws(() => iov.writeAllAt(253, Uint8Array.of(9, 9, 9, 9)), virtioError('ERR_IOVEC_PARTIAL_BUFFER', { expected: 4, completed: 0 }));
    assert.throws(() => iov.writeAllAt(256, buf), virtioError('ERR_IOVEC_OUT_OF_BOUNDS', { address: 256 }));
    assert.equal(iov.writeAt(256, buf), 0);
    assert.deepEqual(guest(), model, 'the refused writes changed nothing');
    const back = new Uint8Array(6);
    assert.equal(iov.readAt(59, back), 6);
    assert.deepEqual(back, model.subarray(59, 65));
  });

  test('every page behind the chain is dirty as soon as it is appended', () => {
    const { mem, bitmaps } = trackedMemory();
    const { drv, q } = setup(16, { mem, dataBase: 0xe000, dataSize: 0x10000 });
    const posted = drv.post([], [0x1000, 0x2800]); // [0xe000, 0xf000), [0xf000, 0x11800)
    for (const b of bitmaps) b.resetAll();
    const iov = IoVecBufferMut.fromChain(q.pop() as DescriptorChain);
    assert.equal(posted.writable[1].addr, 0xf000);
    assert.deepEqual(bitmaps.map(pagesOf), [[14, 15], [0, 1]]);
    assert.equal(iov.viewCount, 3, 'the second descriptor crosses into the second region');
  });

  /** A buffer over [0xe000, 0xf000) and [0xf000, 0x11800) (three views, two regions), its pages then harvested away. */
  function harvestedBuffer() {
    const { mem, bitmaps } = trackedMemory();
    const { drv, q } = setup(16, { mem, dataBase: 0xe000, dataSize: 0x10000 });
    drv.post([], [0x1000, 0x2800]);
    const iov = IoVecBufferMut.fromChain(q.pop() as DescriptorChain);
    // A harvest between building and writing, as a migration's may come while a disk reads.
    assert.ok(mem.harvestDirty().some((r) => r.start === 0xe000 && r.length === 0x4000));
    assert.deepEqual(bitmaps.map(pagesOf), [[], []]);
    return { mem, bitmaps, iov };
  }

  test('writeAt and writeAllAt mark what they wrote again, after it landed', () => {
    const { mem, bitmaps, iov } = harvestedBuffer();
    iov.writeAt(0x0ff0, bytes(0x20)); // guest 0xeff0..0xf010: pages 14 and 15
    assert.deepEqual(bitmaps.map(pagesOf), [[14, 15], []]);
    mem.harvestDirty();
    iov.writeAllAt(0x2100, bytes(8)); // guest 0x10100: page 0 of the second region
    assert.deepEqual(bitmaps.map(pagesOf), [[], [0]]);
  });

  test('markWritten marks what was written through the views, across views and regions', () => {
    const { bitmaps, iov } = harvestedBuffer();
    const views = iov.views();
    views[1].fill(7, 0x0ff0); // guest 0xfff0..0x10000
    views[2].fill(7, 0, 0x20); // guest 0x10000..0x10020
    assert.deepEqual(bitmaps.map(pagesOf), [[], []], 'writes through views are unseen');
    iov.markWritten(0x1ff0, 0x30);
    assert.deepEqual(bitmaps.map(pagesOf), [[15], [0]]);
    iov.markWritten(0x3800, 0); // an empty range at the end: nothing
    assert.deepEqual(bitmaps.map(pagesOf), [[15], [0]]);
  });

  test('markWritten refuses a range past the end of the buffer, marking nothing', () => {
    const { bitmaps, iov } = harvestedBuffer();
    assert.throws(() => iov.markWritten(0x3000, 0x801), virtioError('ERR_IOVEC_OUT_OF_BOUNDS', { address: 0x3000, length: 0x3800 }));
    assert.throws(() => iov.markWritten(0x3801, 0), virtioError('ERR_IOVEC_OUT_OF_BOUNDS'));
    assert.throws(() => iov.markWritten(-1, 1), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => iov.markWritten(0, 0.5), { code: 'ERR_INVALID_ADDRESS' });
    assert.deepEqual(bitmaps.map(pagesOf), [[], []]);
  });

  test('readFromFd marks the bytes it read again, after they landed', () => {
    const { bitmaps, iov } = harvestedBuffer();
    const path = join(dir, 'in-dirty');
    writeFileSync(path, bytes(0x100));
    const fd = openSync(path, 'r');
    try {
      assert.equal(iov.readFromFd(fd, 0x2000 - 0x80, 0x100, 0), 0x100); // guest 0xff80..0x10080
    } finally {
      closeSync(fd);
    }
    assert.deepEqual(bitmaps.map(pagesOf), [[15], [0]]);
  });

  test('views() is a frozen copy: changing it cannot change the buffer', () => {
    const { drv, q } = setup();
    drv.post([], [16]);
    const iov = IoVecBufferMut.fromChain(q.pop() as DescriptorChain);
    const views = iov.views() as Uint8Array[];
    assert.ok(Object.isFrozen(views));
    assert.throws(() => views.push(new Uint8Array(100)), TypeError);
    const copy = [...views, new Uint8Array(100)];
    assert.equal(copy.length, 2);
    assert.notEqual(iov.views(), views, 'each call makes its own copy');
    assert.equal(iov.readAt(0, new Uint8Array(116)), 16, 'the buffer still holds 16 bytes');
    assert.equal(iov.viewCount, 1);
  });

  test('the multi-chain ring: drop from front and back, views follow', () => {
    const { drv, q } = setup();
    const iov = new IoVecBufferMut(8);
    const heads = [[16], [8, 8], [4]].map((lens) => {
      drv.post([], lens);
      return iov.appendChain(q.pop() as DescriptorChain).head;
    });
    assert.deepEqual([iov.length, iov.viewCount, iov.chainCount], [36, 4, 3]);
    assert.equal(iov.dropChainFront()?.head, heads[0]);
    assert.deepEqual([iov.length, iov.viewCount], [20, 3]);
    iov.writeAllAt(0, bytes(20));
    const views = iov.views();
    assert.deepEqual(views.map((v) => v.length), [8, 8, 4]);
    assert.deepEqual(views[2], bytes(4, 16));
    assert.equal(iov.dropChainBack()?.head, heads[2]);
    assert.deepEqual([iov.length, iov.viewCount, iov.chainCount], [16, 2, 1]);
    assert.equal(iov.dropChainFront()?.head, heads[1]);
    assert.equal(iov.dropChainFront(), undefined);
    assert.equal(iov.dropChainBack(), undefined);
    assert.deepEqual([iov.length, iov.viewCount], [0, 0]);
  });

  test('ERR_IOVEC_FULL: the ring holds at most capacity views, and a refused chain adds nothing', () => {
    const { drv, q } = setup();
    const iov = new IoVecBufferMut(3);
    drv.post([], [8, 8]);
    iov.appendChain(q.pop() as DescriptorChain);
    drv.post([], [8, 8]);
    assert.throws(() => iov.appendChain(q.pop() as DescriptorChain), virtioError('ERR_IOVEC_FULL'));
    assert.deepEqual([iov.length, iov.viewCount, iov.chainCount], [16, 2, 1]);
  });

  test('a chain broken in its last descriptor leaves the buffer and the dirty bitmap unchanged', () => {
    const { mem, bitmaps } = trackedMemory();
    const { drv, q } = setup(16, { mem, dataBase: 0x8000, dataSize: 0x8000 });
    const iov = new IoVecBufferMut();
    drv.post([], [0x1000]);
    iov.appendChain(q.pop() as DescriptorChain);
    const W = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT;
    drv.writeDescriptor(5, { addr: 0xa000, len: 0x1000, flags: W, next: 6 });
    drv.writeDescriptor(6, { addr: 0xc000, len: 0x1000, flags: W, next: 7 });
    drv.writeDescriptor(7, { addr: 0x1f000, len: 0x2000, flags: VIRTQ_DESC_F_WRITE, next: 0 }); // past the end
    drv.publish(5);
    const broken = q.pop() as DescriptorChain;
    for (const b of bitmaps) b.resetAll();
    assert.throws(() => iov.appendChain(broken), virtioError('ERR_DESC_ADDRESS', { index: 7 }));
    assert.deepEqual([iov.length, iov.viewCount, iov.chainCount], [0x1000, 1, 1]);
    assert.deepEqual(bitmaps.map(pagesOf), [[], []]);
  });

  test('ERR_IOVEC_READ_ONLY_MEMORY: a writable buffer in ROM is refused before anything is marked', () => {
    const bitmap = new AtomicBitmap(0x10000);
    const mem = GuestMemory.fromRegions([
      new GuestMemoryRegion(G(0), heapBackend(0x10000), { bitmap }),
      new GuestMemoryRegion(G(0x10000), heapBackend(0x1000), { readOnly: true }),
    ]);
    const { drv, q } = setup(16, { mem, dataBase: 0x8000, dataSize: 0x1000 });
    const W = VIRTQ_DESC_F_WRITE;
    drv.writeDescriptor(0, { addr: 0x8000, len: 0x100, flags: W | VIRTQ_DESC_F_NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: 0x10000, len: 0x100, flags: W, next: 0 });
    drv.writeDescriptor(2, { addr: 0x10000, len: 0x100, flags: 0, next: 0 });
    for (const head of [0, 0, 2]) drv.publish(head);
    const [a, b, rom] = [q.pop(), q.pop(), q.pop()] as DescriptorChain[];
    bitmap.resetAll();
    const iov = new IoVecBufferMut();
    assert.throws(() => iov.appendChain(a), virtioError('ERR_IOVEC_READ_ONLY_MEMORY', { index: 0 }));
    assert.throws(() => splitChain(b), virtioError('ERR_IOVEC_READ_ONLY_MEMORY'));
    assert.deepEqual([iov.length, bitmap.count()], [0, 0]);
    assert.equal(IoVecBuffer.fromChain(rom).length, 0x100, 'reading ROM is fine');
  });

  test('ERR_IOVEC_OVERFLOW: totals past 2^32 - 1, for one chain and across appended chains', () => {
    const mem = GuestMemory.fromRegions([
      new GuestMemoryRegion(G(0), heapBackend(0x10000)),
      new GuestMemoryRegion(G(0x8000_0000), heapBackend(0x8000_0000)),
    ]);
    const { drv, q } = setup(16, { mem, dataBase: 0x8000, dataSize: 0x8000 });
    const W = VIRTQ_DESC_F_WRITE;
    drv.writeDescriptor(0, { addr: 0x8000_0000, len: 0x8000_0000, flags: W | VIRTQ_DESC_F_NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: 0x8000_0000, len: 0x8000_0000, flags: W, next: 0 });
    drv.publish(0);
    assert.throws(() => IoVecBufferMut.fromChain(q.pop() as DescriptorChain), virtioError('ERR_IOVEC_OVERFLOW'));
    drv.writeDescriptor(1, { addr: 0x8000_0000, len: 0x8000_0000, flags: W, next: 0 });
    drv.publish(1);
    drv.publish(1);
    const iov = IoVecBufferMut.fromChain(q.pop() as DescriptorChain);
    assert.equal(iov.length, 0x8000_0000);
    assert.throws(() => iov.appendChain(q.pop() as DescriptorChain), virtioError('ERR_IOVEC_OVERFLOW'));
    assert.deepEqual([iov.length, iov.chainCount], [0x8000_0000, 1]);
    drv.writeDescriptor(2, { addr: 0x8000_0000, len: 0x8000_0000, flags: VIRTQ_DESC_F_NEXT, next: 3 });
    drv.writeDescriptor(3, { addr: 0x8000_0000, len: 0x8000_0000, flags: 0, next: 0 });
    drv.publish(2);
    assert.throws(() => IoVecBuffer.fromChain(q.pop() as DescriptorChain), virtioError('ERR_IOVEC_OVERFLOW'));
  });
});

describe('splitChain', () => {
  test('a header out and data plus status back: readable head, writable tail', () => {
    const { drv, q } = setup();
    const posted = drv.post([bytes(16)], [512, 1]);
    const { head, reader, writer } = splitChain(q.pop() as DescriptorChain);
    assert.equal(head, posted.head);
    assert.deepEqual([reader.length, writer.length], [16, 513]);
    writer.writeAllAt(512, Uint8Array.of(7));
    assert.deepEqual(drv.read(posted.writable[1]), Uint8Array.of(7));
  });

  test('all-readable and all-writable chains give an empty other half', () => {
    const { drv, q } = setup();
    drv.post([bytes(4)], []);
    drv.post([], [4]);
    const a = splitChain(q.pop() as DescriptorChain);
    const b = splitChain(q.pop() as DescriptorChain);
    assert.deepEqual([a.reader.length, a.writer.length, b.reader.length, b.writer.length], [4, 0, 0, 4]);
  });
});

describe('zero-copy fd I/O', () => {
  test('writeToFd sends the guest bytes with writev at a file position, from an offset', () => {
    const iov = IoVecBuffer.fromChain(fourChain(false).chain);
    const path = join(dir, 'out');
    writeFileSync(path, new Uint8Array(8).fill(0xee));
    const fd = openSync(path, 'r+');
    try {
      assert.equal(iov.writeToFd(fd, 60, 100, 4), 100);
      assert.equal(iov.writeToFd(fd, 250, 100, 104), 6, 'the buffer ends first');
      assert.equal(iov.writeToFd(fd, 256, 1, 0), 0);
      assert.equal(iov.writeToFd(fd, 0, 2), 2, 'no position: the fd\'s own, from its start');
    } finally {
      closeSync(fd);
    }
    const got = new Uint8Array(readFileSync(path));
    assert.deepEqual(got.subarray(0, 4), Uint8Array.of(0, 1, 0xee, 0xee));
    assert.deepEqual(got.subarray(4, 104), bytes(100, 60));
    assert.deepEqual(got.subarray(104), bytes(6, 250));
  });

  test('readFromFd fills guest memory with readv; end of file is a short count', () => {
    const { chain, mem, posted } = fourChain(true);
    const iov = IoVecBufferMut.fromChain(chain);
    const path = join(dir, 'in');
    writeFileSync(path, bytes(200, 100));
    const fd = openSync(path, 'r');
    try {
      assert.equal(iov.readFromFd(fd, 10, 150, 0), 150);
      assert.equal(iov.readFromFd(fd, 0, 100, 190), 10, 'only 10 bytes left in the file');
      assert.equal(iov.readFromFd(fd, 0, 100, 500), 0);
    } finally {
      closeSync(fd);
    }
    const out = new Uint8Array(256);
    mem.readSlice(posted.writable[0].addr, out);
    const model = new Uint8Array(256);
    model.set(bytes(150, 100), 10);
    model.set(bytes(10, 290), 0);
    assert.deepEqual(out, model);
  });

  test('EINTR is retried; other failures are ERR_IOVEC_IO with the cause', (t) => {
    const iov = IoVecBuffer.fromBytes([bytes(8), bytes(8, 8)]);
    const path = join(dir, 'eintr');
    writeFileSync(path, '');
    const fd = openSync(path, 'r+');
    let calls = 0;
    const real = fsCalls.writevSync;
    t.after(() => {
      fsCalls.writevSync = real;
      closeSync(fd);
    });
    fsCalls.writevSync = (...args: Parameters<typeof real>) => {
      if (calls++ < 2) throw Object.assign(new Error('interrupted'), { code: 'EINTR' });
      return real(...args);
    };
    assert.equal(iov.writeToFd(fd, 0, 16, 0), 16);
    assert.equal(calls, 3);
    assert.deepEqual(readFileSync(path), Buffer.from(bytes(16)));
    fsCalls.writevSync = () => {
      throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
    };
    assert.throws(
      () => iov.writeToFd(fd, 0, 16, 0),
      (err: unknown) => virtioError('ERR_IOVEC_IO')(err) && ((err as Error).cause as NodeJS.ErrnoException).code === 'ENOSPC',
    );
    const mut = IoVecBufferMut.fromBytes([new Uint8Array(4)]);
    assert.throws(() => mut.readFromFd(fd, 0, 4, -1), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => mut.readFromFd(-1, 0, 4, 0), virtioError('ERR_INVALID_ARG'));
  });

  test('one call moves at most IOV_MAX views: the rest is a partial transfer', () => {
    const parts = Array.from({ length: IOV_MAX + 10 }, (_, i) => Uint8Array.of(i & 0xff));
    const iov = IoVecBuffer.fromBytes(parts);
    const path = join(dir, 'many');
    writeFileSync(path, '');
    const fd = openSync(path, 'r+');
    try {
      assert.equal(iov.writeToFd(fd, 0, parts.length, 0), IOV_MAX);
      assert.equal(iov.writeToFd(fd, IOV_MAX, parts.length, IOV_MAX), 10);
    } finally {
      closeSync(fd);
    }
    assert.deepEqual(readFileSync(path), Buffer.from(parts.map((p) => p[0])));
  });

  test('the queue and buffers keep working over a dropped-and-rebuilt memory value', () => {
    const { drv, q, mem } = setup();
    drv.post([], [8]);
    q.setMemory(GuestMemory.fromRegions(mem.regions()));
    const iov = IoVecBufferMut.fromChain(q.pop() as DescriptorChain);
    iov.writeAllAt(0, bytes(8));
    assert.deepEqual(mem.readU8(G(0x20007)), 7);
  });
});
