/**
 * Worker for the lost-dirty-page stress test: rebuilds the shared guest memory and writes its
 * own pages (page `p` belongs to worker `p % workers`, above the ring area) until told to stop,
 * each write carrying a fresh stamp, through one write path:
 *
 * - `bytes`: `GuestMemory.writeSlice` (marks after the write; the control),
 * - `blk`: virtio-blk IN requests whose disk writes the `IoVecBufferMut`'s views after a delay,
 *   as a readv into guest memory would,
 * - `view`: `VolatileSlice.view('write')`, written after a delay, then `markWritten`.
 *
 * The delays model device latency: the window in which a harvest can take a page's bit before
 * the bytes land.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GuestAddress } from '../../address/address.js';
import { sharedBackend } from '../../backend/buffer.js';
import { AtomicBitmap, type SharedBitmapDescription } from '../../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { GuestMemoryRegion } from '../../region/region.js';
import type { BlockDisk } from '../blk-disk.js';
import { VIRTIO_BLK_T_IN, VirtioBlk } from '../blk.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../chain.js';
import { VirtqueueDriver } from '../driver.js';
import type { IoVecBufferMut } from '../iovec.js';
import { SplitQueue } from '../queue.js';

export type WritePath = 'bytes' | 'blk' | 'view';

export interface DirtyWriterData {
  regions: { start: number; buffer: SharedArrayBuffer; bitmap: SharedBitmapDescription }[];
  pageSize: number;
  /** Pages below this hold the workers' rings (`ringPages` each) and are not data pages. */
  firstDataPage: number;
  ringPages: number;
  worker: number;
  workers: number;
  path: WritePath;
  seed: number;
  /** Int32 words: [0] turns 1 to start, [1] turns 1 to stop. */
  control: SharedArrayBuffer;
  /** Longest modelled device latency, in ms. */
  maxDelayMs: number;
}

const d = workerData as DirtyWriterData;
const G = GuestAddress;
const PAGE = d.pageSize;
const mem = GuestMemory.fromRegions(
  d.regions.map((r) => new GuestMemoryRegion(G(r.start), sharedBackend(r.buffer), { bitmap: AtomicBitmap.fromShared(r.bitmap) })),
);
const control = new Int32Array(d.control);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const totalPages = mem.totalSize / PAGE;
const mine: number[] = [];
for (let p = d.firstDataPage; p < totalPages; p++) if (p % d.workers === d.worker) mine.push(p);

let state = d.seed | 1;
function random(): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}
let stamp = (d.worker + 1) << 24;

/** Waits up to maxDelayMs: the device at work. */
function latency(): void {
  Atomics.wait(sleeper, 0, 0, (random() % 1000) * (d.maxDelayMs / 1000));
}

/** Fills `v` with a pattern of `s`: a u32 stamp every 64 bytes. */
function stampInto(v: Uint8Array, s: number): void {
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  for (let at = 0; at + 4 <= v.length; at += 64) dv.setUint32(at, s, true);
}

/** What a disk's readv does: the bytes land in the views, unseen by any bitmap. */
class SlowDisk implements BlockDisk {
  readonly size = 2 ** 30;
  readonly readOnly = true;
  read(dst: IoVecBufferMut, offset: number, length: number): void {
    latency();
    let skip = offset;
    let left = length;
    for (const v of dst.views()) {
      if (skip >= v.length) {
        skip -= v.length;
        continue;
      }
      const n = Math.min(v.length - skip, left);
      stampInto(v.subarray(skip, skip + n), stamp);
      left -= n;
      skip = 0;
      if (left === 0) break;
    }
  }
  write(): void {}
  flush(): void {}
  discard(): void {}
  writeZeroes(): void {}
}

function blkWriter(): () => void {
  const ringBase = d.worker * d.ringPages * PAGE;
  const drv = new VirtqueueDriver(mem, { size: 4, ringBase: G(ringBase), dataBase: G(ringBase + PAGE), dataSize: PAGE });
  const queue = new SplitQueue(mem, drv.queueConfig());
  const blk = new VirtioBlk(new SlowDisk());
  const header = drv.alloc(16);
  const status = drv.alloc(1);
  const head = new Uint8Array(16);
  const hv = new DataView(head.buffer);
  return () => {
    const page = mine[random() % mine.length];
    const len = 512 * (1 + (random() % (PAGE / 512)));
    hv.setUint32(0, VIRTIO_BLK_T_IN, true);
    hv.setBigUint64(8, BigInt(random() % 1000), true);
    mem.writeSlice(header, head);
    drv.writeDescriptor(0, { addr: header, len: 16, flags: VIRTQ_DESC_F_NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: page * PAGE + (PAGE - len), len, flags: VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, next: 2 });
    drv.writeDescriptor(2, { addr: status, len: 1, flags: VIRTQ_DESC_F_WRITE, next: 0 });
    drv.publish(0);
    if (blk.processQueue(queue) !== 1) throw new Error('the request was not served');
    drv.used();
  };
}

function viewWriter(): () => void {
  return () => {
    const page = mine[random() % mine.length];
    const slice = mem.getSlice(G(page * PAGE), PAGE);
    const v = slice.view('write');
    latency();
    stampInto(v, stamp);
    slice.markWritten();
  };
}

function bytesWriter(): () => void {
  const buf = new Uint8Array(PAGE);
  return () => {
    const page = mine[random() % mine.length];
    stampInto(buf, stamp);
    latency(); // the same pace as the other paths
    mem.writeSlice(G(page * PAGE), buf);
  };
}

const write = d.path === 'blk' ? blkWriter() : d.path === 'view' ? viewWriter() : bytesWriter();
Atomics.wait(control, 0, 0);
let writes = 0;
while (Atomics.load(control, 1) === 0) {
  stamp++;
  write();
  writes++;
}
parentPort!.postMessage(writes);
