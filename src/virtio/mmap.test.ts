/**
 * The virtio path over native memory (memfd and anonymous mappings, as vhost-user hands a backend):
 * a virtio-blk write and read whose buffers cross from one mapping into the next, moved between
 * the disk image and the mappings by readv/writev. Skips, saying why, without the native addon.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { FdDisk } from './blk-disk.js';
import { VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VirtioBlk } from './blk.js';
import type { DescriptorChain } from './chain.js';
import { VirtqueueDriver } from './driver.js';
import { splitChain } from './iovec.js';
import { SplitQueue } from './queue.js';
import { G } from './test-support/setup.js';

const mmap = await import('../mmap/index.js').catch((err: unknown) => err as Error);

test('virtio-blk over memfd + anonymous mappings: data crosses the mapping boundary intact', (t) => {
  if (mmap instanceof Error) {
    t.skip(`the native addon is not available: ${mmap.message}`);
    return;
  }
  using low = mmap.MmapBackend.memfd(1 << 20);
  using high = mmap.MmapBackend.anonymous(1 << 20);
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), low), new GuestMemoryRegion(G(1 << 20), high)]);
  // Buffers start just below the boundary, so the first data buffer spans both mappings.
  const drv = new VirtqueueDriver(mem, { size: 16, dataBase: G((1 << 20) - 0x100), dataSize: 0x10000 });
  const q = new SplitQueue(mem, drv.queueConfig());
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-virtio-mmap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.img');
  writeFileSync(path, new Uint8Array(64 * 512));
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  const blk = new VirtioBlk(new FdDisk(fd));

  const header = (type: number, sector: number) => {
    const h = new Uint8Array(16);
    h[0] = type;
    h[8] = sector;
    return h;
  };
  const data = Uint8Array.from({ length: 4 * 512 }, (_, i) => (i * 11 + 3) & 0xff);
  const w = drv.post([header(VIRTIO_BLK_T_OUT, 2), data], [1]);
  assert.ok(w.readable[1].addr < 1 << 20 && w.readable[1].addr + w.readable[1].len > 1 << 20, 'the data crosses the boundary');
  const r = drv.post([header(VIRTIO_BLK_T_IN, 2)], [data.length, 1]);
  assert.equal(blk.processQueue(q), 2);
  assert.deepEqual(drv.used().map((u) => u.len), [1, data.length + 1]);
  assert.equal(drv.read(w.writable[0])[0], VIRTIO_BLK_S_OK);
  assert.deepEqual(new Uint8Array(readFileSync(path)).subarray(2 * 512, 6 * 512), data);
  assert.deepEqual(drv.read(r.writable[0]), data);
});

test('buffers over a closed mapping come up short with typed errors, never a crash', (t) => {
  if (mmap instanceof Error) {
    t.skip(`the native addon is not available: ${mmap.message}`);
    return;
  }
  const backend = mmap.MmapBackend.memfd(1 << 20);
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), backend)]);
  const drv = new VirtqueueDriver(mem, { size: 16, dataBase: G(0x10000), dataSize: 0x10000 });
  const q = new SplitQueue(mem, drv.queueConfig());
  drv.post([Uint8Array.of(1, 2, 3, 4)], [16]);
  const { reader, writer } = splitChain(q.pop() as DescriptorChain);
  backend.close();
  assert.throws(() => writer.writeAllAt(0, new Uint8Array(16)), { code: 'ERR_IOVEC_PARTIAL_BUFFER', completed: 0 });
  assert.throws(() => reader.readExactAt(0, new Uint8Array(4)), { code: 'ERR_IOVEC_PARTIAL_BUFFER', completed: 0 });
  const zero = openSync('/dev/zero', 'r');
  t.after(() => closeSync(zero));
  assert.equal(writer.readFromFd(zero, 0, 16, 0), 0, 'no live view: nothing to read into');
});
