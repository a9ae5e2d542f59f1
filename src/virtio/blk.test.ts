/**
 * virtio-blk: configuration layout, and requests driven through a real queue onto a temp disk
 * image: data lands exactly on the requested sectors, and every refused request leaves both the
 * image and guest memory as they were.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { GuestMemory } from '../memory/guest-memory.js';
import { pagesOf } from '../test-support/bitmap.js';
import { decodeBlkConfig, encodeBlkConfig, SECTOR_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_RO, VirtioBlkConfigLayout } from './blk-config.js';
import { type BlockDisk, FdDisk } from './blk-disk.js';
import {
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  type BlkOutcome,
  VirtioBlk,
  type VirtioBlkOptions,
} from './blk.js';
import { type DescriptorChain, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from './chain.js';
import type { PostedChain, VirtqueueDriver } from './driver.js';
import { VIRTIO_F_VERSION_1 } from './queue.js';
import type { IoVecBufferMut } from './iovec.js';
import { G, setup, trackedMemory, virtioError } from './test-support/setup.js';
import type { VirtioErrorCode } from './errors.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-blk-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SECTORS = 64;

function header(type: number, sector: bigint | number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setBigUint64(8, BigInt(sector), true);
  return h;
}

function segment(sector: number, sectors: number, flags = 0): Uint8Array {
  const s = new Uint8Array(16);
  const dv = new DataView(s.buffer);
  dv.setBigUint64(0, BigInt(sector), true);
  dv.setUint32(8, sectors, true);
  dv.setUint32(12, flags, true);
  return s;
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

/** A device over a fresh image whose sector k is filled with the byte k. */
function device(options: VirtioBlkOptions & { readOnly?: boolean; disk?: BlockDisk } = {}) {
  const path = join(dir, `disk-${Math.random().toString(36).slice(2)}`);
  const image = new Uint8Array(SECTORS * SECTOR_SIZE);
  for (let k = 0; k < SECTORS; k++) image.fill(k, k * SECTOR_SIZE, (k + 1) * SECTOR_SIZE);
  writeFileSync(path, image);
  const fd = openSync(path, options.readOnly ? 'r' : 'r+');
  after(() => closeSync(fd));
  const blk = new VirtioBlk(options.disk ?? new FdDisk(fd, { readOnly: options.readOnly }), options);
  const s = setup(16, { dataSize: 0x10000 });
  /** Posts one request and lets the device handle it. */
  const run = (readable: Uint8Array[], writable: number[], indirect = false): { posted: PostedChain; out: BlkOutcome } => {
    const posted = s.drv.post(readable, writable, { indirect });
    const out = blk.handle(s.q.pop() as DescriptorChain);
    s.q.addUsed(out.head, out.usedLen);
    s.drv.used();
    return { posted, out };
  };
  return { ...s, blk, image, run, disk: () => new Uint8Array(readFileSync(path)) };
}

function statusOf(drv: VirtqueueDriver, posted: PostedChain): number {
  return drv.read(posted.writable[posted.writable.length - 1])[0];
}

function refused(out: BlkOutcome, status: number, code: VirtioErrorCode): void {
  assert.equal(out.status, status);
  assert.equal(out.error?.code, code, out.error?.message);
}

describe('virtio-blk configuration', () => {
  test('struct virtio_blk_config: 72 bytes, fields at the spec offsets', () => {
    assert.equal(VirtioBlkConfigLayout.size, 72);
    const at = Object.fromEntries(VirtioBlkConfigLayout.fields.map((f) => [f.name, f.offset]));
    assert.deepEqual(
      [at.capacity, at.size_max, at.seg_max, at.cylinders, at.blk_size, at.physical_block_exp, at.opt_io_size, at.writeback],
      [0, 8, 12, 16, 20, 24, 28, 32],
    );
    assert.deepEqual(
      [at.num_queues, at.max_discard_sectors, at.max_write_zeroes_seg, at.write_zeroes_may_unmap, at.max_secure_erase_sectors],
      [34, 36, 52, 56, 60],
    );
    const bytes = encodeBlkConfig({ capacity: 2 ** 40, seg_max: 254, blk_size: 512, num_queues: 1 });
    const dv = new DataView(bytes.buffer);
    assert.deepEqual([dv.getBigUint64(0, true), dv.getUint32(12, true), dv.getUint32(20, true), dv.getUint16(34, true)], [2n ** 40n, 254, 512, 1]);
    assert.equal(decodeBlkConfig(bytes).capacity, 2 ** 40);
  });

  test('ERR_INVALID_ARG: unknown fields, values out of range, short bytes, bad device options', () => {
    assert.throws(() => encodeBlkConfig({ nope: 1 } as never), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => encodeBlkConfig({ heads: 256 }), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => decodeBlkConfig(new Uint8Array(71)), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => new VirtioBlk({ size: 0, readOnly: false } as BlockDisk, { id: 'x'.repeat(21) }), virtioError('ERR_INVALID_ARG'));
    for (const bad of [{ queueSize: 0 }, { maxDiscardSectors: 2 ** 32 }, { maxDiscardSegments: 1.5 }]) {
      assert.throws(() => new VirtioBlk({ size: 0, readOnly: false } as BlockDisk, bad), virtioError('ERR_INVALID_ARG'), JSON.stringify(bad));
    }
  });

  test('the device reports its capacity, seg_max and features', () => {
    const { blk } = device({ queueSize: 128 });
    const cfg = decodeBlkConfig(blk.config());
    assert.deepEqual([cfg.capacity, cfg.seg_max, cfg.blk_size, cfg.max_discard_seg], [SECTORS, 126, 512, 1]);
    assert.equal((blk.features >> BigInt(VIRTIO_BLK_F_DISCARD)) & 1n, 1n);
    assert.equal((blk.features >> BigInt(VIRTIO_F_VERSION_1)) & 1n, 1n);
    assert.equal((blk.features >> BigInt(VIRTIO_BLK_F_RO)) & 1n, 0n);
    assert.equal((device({ readOnly: true }).blk.features >> BigInt(VIRTIO_BLK_F_RO)) & 1n, 1n);
  });
});

describe('virtio-blk requests', () => {
  test('OUT writes exactly the requested sectors; IN reads them back (direct and indirect)', () => {
    const d = device();
    const data = pattern(3 * SECTOR_SIZE, 1);
    const w = d.run([header(VIRTIO_BLK_T_OUT, 10), data.subarray(0, 1000), data.subarray(1000)], [1]);
    assert.deepEqual([w.out.status, w.out.usedLen, statusOf(d.drv, w.posted)], [VIRTIO_BLK_S_OK, 1, VIRTIO_BLK_S_OK]);
    const model = d.image.slice();
    model.set(data, 10 * SECTOR_SIZE);
    assert.deepEqual(d.disk(), model);
    const r = d.run([header(VIRTIO_BLK_T_IN, 9)], [SECTOR_SIZE, 4 * SECTOR_SIZE, 1], true);
    assert.deepEqual([r.out.status, r.out.usedLen], [VIRTIO_BLK_S_OK, 5 * SECTOR_SIZE + 1]);
    const got = new Uint8Array([...d.drv.read(r.posted.writable[0]), ...d.drv.read(r.posted.writable[1])]);
    assert.deepEqual(got, model.subarray(9 * SECTOR_SIZE, 14 * SECTOR_SIZE));
  });

  test('the last sectors are reachable; one past the capacity is ERR_BLK_SECTOR_RANGE and moves nothing', () => {
    const d = device();
    assert.equal(d.run([header(VIRTIO_BLK_T_OUT, SECTORS - 1), pattern(SECTOR_SIZE, 2)], [1]).out.status, VIRTIO_BLK_S_OK);
    const before = d.disk();
    for (const sector of [SECTORS, SECTORS - 1, 2n ** 64n - 1n, 2n ** 53n]) {
      const w = d.run([header(VIRTIO_BLK_T_OUT, sector), pattern(2 * SECTOR_SIZE, 3)], [1]);
      refused(w.out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_SECTOR_RANGE');
      assert.equal(statusOf(d.drv, w.posted), VIRTIO_BLK_S_IOERR);
      const r = d.run([header(VIRTIO_BLK_T_IN, sector)], [2 * SECTOR_SIZE, 1]);
      refused(r.out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_SECTOR_RANGE');
      assert.equal(r.out.usedLen, 1);
      assert.deepEqual(d.drv.read(r.posted.writable[0]), new Uint8Array(2 * SECTOR_SIZE), 'guest buffer untouched');
    }
    assert.deepEqual(d.disk(), before);
  });

  test('ERR_BLK_REQUEST: partial sectors, a short header, no status byte', () => {
    const d = device();
    refused(d.run([header(VIRTIO_BLK_T_OUT, 0), pattern(100, 4)], [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    refused(d.run([header(VIRTIO_BLK_T_IN, 0)], [513, 1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    refused(d.run([header(VIRTIO_BLK_T_IN, 0).subarray(0, 8)], [512, 1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    const none = d.run([header(VIRTIO_BLK_T_FLUSH, 0)], []).out;
    assert.deepEqual([none.status, none.usedLen, none.error?.code], [undefined, 0, 'ERR_BLK_REQUEST']);
    assert.deepEqual(d.disk(), d.image);
  });

  test('a chain too broken to parse is reported used with length 0 and its chain error', () => {
    const d = device();
    d.drv.writeDescriptor(0, { addr: 0x10000, len: 16, flags: 0, next: 0 }); // in the memory hole
    d.drv.publish(0);
    const out = d.blk.handle(d.q.pop() as DescriptorChain);
    assert.deepEqual([out.status, out.usedLen, out.error?.code], [undefined, 0, 'ERR_DESC_ADDRESS']);
  });

  test('FLUSH flushes; GET_ID answers the id; unknown types are UNSUPP', () => {
    let flushes = 0;
    const base = device();
    const disk: BlockDisk = Object.assign(Object.create(base.blk.disk), { flush: () => void flushes++ });
    const d = device({ disk, id: 'guestmem-disk' });
    assert.equal(d.run([header(VIRTIO_BLK_T_FLUSH, 0)], [1]).out.status, VIRTIO_BLK_S_OK);
    assert.equal(flushes, 1);
    const id = d.run([header(VIRTIO_BLK_T_GET_ID, 0)], [20, 1]);
    assert.deepEqual([id.out.status, id.out.usedLen], [VIRTIO_BLK_S_OK, 21]);
    assert.equal(new TextDecoder().decode(d.drv.read(id.posted.writable[0])).replace(/\0+$/, ''), 'guestmem-disk');
    const u = d.run([header(77, 0)], [1]);
    refused(u.out, VIRTIO_BLK_S_UNSUPP, 'ERR_BLK_UNSUPPORTED');
    assert.equal(statusOf(d.drv, u.posted), VIRTIO_BLK_S_UNSUPP);
  });

  test('a read-only disk refuses OUT, DISCARD and WRITE_ZEROES with IOERR and stays unchanged', () => {
    const d = device({ readOnly: true });
    for (const req of [
      [header(VIRTIO_BLK_T_OUT, 0), pattern(SECTOR_SIZE, 5)],
      [header(VIRTIO_BLK_T_WRITE_ZEROES, 0), segment(0, 1)],
      [header(VIRTIO_BLK_T_DISCARD, 0), segment(0, 1)],
    ]) {
      refused(d.run(req, [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_UNSUPPORTED');
    }
    assert.equal(d.run([header(VIRTIO_BLK_T_IN, 3)], [SECTOR_SIZE, 1]).out.status, VIRTIO_BLK_S_OK);
    assert.deepEqual(d.disk(), d.image);
  });

  test('WRITE_ZEROES zeroes exactly its segments; DISCARD keeps the data', () => {
    const d = device({ maxDiscardSegments: 2 });
    const z = d.run([header(VIRTIO_BLK_T_WRITE_ZEROES, 0), segment(4, 2), segment(20, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)], [1]);
    assert.equal(z.out.status, VIRTIO_BLK_S_OK);
    const model = d.image.slice();
    model.fill(0, 4 * SECTOR_SIZE, 6 * SECTOR_SIZE);
    model.fill(0, 20 * SECTOR_SIZE, 21 * SECTOR_SIZE);
    assert.deepEqual(d.disk(), model);
    assert.equal(d.run([header(VIRTIO_BLK_T_DISCARD, 0), segment(30, 2)], [1]).out.status, VIRTIO_BLK_S_OK);
    assert.deepEqual(d.disk(), model);
  });

  test('discard / write-zeroes refusals: flags, segment counts and ranges, checked before any segment runs', () => {
    const d = device({ maxDiscardSegments: 2, maxDiscardSectors: 8 });
    const Z = VIRTIO_BLK_T_WRITE_ZEROES;
    refused(d.run([header(VIRTIO_BLK_T_DISCARD, 0), segment(0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)], [1]).out, VIRTIO_BLK_S_UNSUPP, 'ERR_BLK_UNSUPPORTED');
    refused(d.run([header(Z, 0), segment(0, 1, 2)], [1]).out, VIRTIO_BLK_S_UNSUPP, 'ERR_BLK_UNSUPPORTED');
    refused(d.run([header(Z, 0), segment(0, 1), segment(2, 1), segment(4, 1)], [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    refused(d.run([header(Z, 0)], [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    refused(d.run([header(Z, 0), segment(0, 1).subarray(0, 12)], [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    refused(d.run([header(Z, 0), segment(0, 9)], [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST');
    refused(d.run([header(Z, 0), segment(0, 1), segment(SECTORS - 1, 2)], [1]).out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_SECTOR_RANGE');
    assert.deepEqual(d.disk(), d.image, 'the valid first segment was not applied either');
  });

  test('a failing disk gives IOERR with ERR_BLK_IO and the cause', () => {
    const cause = Object.assign(new Error('EIO'), { code: 'EIO' });
    const disk: BlockDisk = {
      size: SECTORS * SECTOR_SIZE,
      readOnly: false,
      read: () => {
        throw cause;
      },
      write: () => {},
      flush: () => {
        throw cause;
      },
      discard: () => {},
      writeZeroes: () => {},
    };
    const d = device({ disk });
    for (const req of [header(VIRTIO_BLK_T_IN, 0), header(VIRTIO_BLK_T_FLUSH, 0)]) {
      const out = d.run([req], req[0] === VIRTIO_BLK_T_IN ? [SECTOR_SIZE, 1] : [1]).out;
      refused(out, VIRTIO_BLK_S_IOERR, 'ERR_BLK_IO');
      assert.equal(out.error?.cause, cause);
    }
  });

  test('processQueue handles every available chain and publishes them in one batch', () => {
    const d = device();
    const posted = [
      d.drv.post([header(VIRTIO_BLK_T_OUT, 1), pattern(SECTOR_SIZE, 9)], [1]),
      d.drv.post([header(VIRTIO_BLK_T_IN, 1)], [SECTOR_SIZE, 1]),
      d.drv.post([header(99, 0)], [1]),
    ];
    assert.equal(d.blk.processQueue(d.q), 3);
    assert.deepEqual(d.drv.used(), [
      { id: posted[0].head, len: 1 },
      { id: posted[1].head, len: SECTOR_SIZE + 1 },
      { id: posted[2].head, len: 1 },
    ]);
    assert.deepEqual(d.drv.read(posted[1].writable[0]), pattern(SECTOR_SIZE, 9));
    assert.equal(d.q.needsNotification(), true);
    assert.equal(d.blk.processQueue(d.q), 0);
  });
});

describe('virtio-blk dirty pages', () => {
  /**
   * A disk whose read writes the guest buffer through the views, as a readv does, after a
   * harvest took the pages (a migration's harvest running while the disk reads); with `fail`, it
   * then throws, having written part of the data.
   */
  function slowDisk(mem: GuestMemory, fail = false): BlockDisk {
    return {
      size: SECTORS * SECTOR_SIZE,
      readOnly: true,
      read(dst: IoVecBufferMut, offset: number, length: number) {
        mem.harvestDirty();
        dst.views()[0].fill(0xab, offset, offset + (fail ? length / 2 : length));
        if (fail) throw new Error('EIO after half the data');
      },
      write: () => {},
      flush: () => {},
      discard: () => {},
      writeZeroes: () => {},
    };
  }

  for (const fail of [false, true]) {
    test(`an IN request marks its data again when it completes${fail ? ' (also when the disk fails midway)' : ''}`, () => {
      const { mem, bitmaps } = trackedMemory();
      const { drv, q } = setup(16, { mem, dataBase: 0x10000, dataSize: 0x10000 });
      const blk = new VirtioBlk(slowDisk(mem, fail));
      // The data fills pages 1 and 2 of the second region; the header and status byte sit in page 3.
      const data = G(0x11000);
      mem.writeSlice(G(0x13000), header(VIRTIO_BLK_T_IN, 0));
      drv.writeDescriptor(0, { addr: 0x13000, len: 16, flags: VIRTQ_DESC_F_NEXT, next: 1 });
      drv.writeDescriptor(1, { addr: data, len: 2 * 4096, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 });
      drv.writeDescriptor(2, { addr: 0x13010, len: 1, flags: VIRTQ_DESC_F_WRITE, next: 0 });
      drv.publish(0);
      const out = blk.handle(q.pop() as DescriptorChain);
      assert.equal(out.status, fail ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
      assert.equal(mem.readU8(data), 0xab, 'the disk wrote the buffer');
      assert.deepEqual(pagesOf(bitmaps[1]), [1, 2, 3], 'the data pages are dirty again after the harvest, with the status page');
    });
  }
});
