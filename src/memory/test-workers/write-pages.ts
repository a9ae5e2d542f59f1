/**
 * Worker for the guest-memory dirty stress test: rebuilds the shared guest memory from its
 * SharedArrayBuffers and shared bitmap words, writes a random half of the pages, each once,
 * through the Bytes API, and posts back the guest page numbers it wrote.
 *
 * Worker `w` of `n` starts its walk at the `w`-th n-th of the pages, so the workers write
 * different pages at any moment while the harvester races them; each page is written at most
 * once per worker, so a lost mark cannot be hidden by a later write.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GuestAddress } from '../../address/address.js';
import { sharedBackend } from '../../backend/buffer.js';
import { AtomicBitmap, type SharedBitmapDescription } from '../../bitmap/atomic-bitmap.js';
import { GuestMemoryRegion } from '../../region/region.js';
import { GuestMemory } from '../guest-memory.js';

export interface WritePagesData {
  regions: { start: number; buffer: SharedArrayBuffer; bitmap: SharedBitmapDescription }[];
  pageSize: number;
  worker: number;
  workers: number;
  seed: number;
  /** An Int32Array word that turns 1 when all workers may start. */
  go: SharedArrayBuffer;
}

const { regions, pageSize, worker, workers, seed, go } = workerData as WritePagesData;
const mem = GuestMemory.fromRegions(
  regions.map(
    (r) => new GuestMemoryRegion(GuestAddress(r.start), sharedBackend(r.buffer), { bitmap: AtomicBitmap.fromShared(r.bitmap) }),
  ),
);
const pages = mem.regions().flatMap((r) => Array.from({ length: r.length / pageSize }, (_, i) => r.start / pageSize + i));
const written: number[] = [];
let state = seed | 1;
Atomics.wait(new Int32Array(go), 0, 0);
const first = Math.floor((worker * pages.length) / workers);
for (let i = 0; i < pages.length; i++) {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  if (state & 2) continue;
  const page = pages[(first + i) % pages.length];
  const addr = GuestAddress(page * pageSize + (((state >>> 20) % (pageSize / 4)) * 4));
  // Alternate write paths: a typed store and a small bulk copy.
  if (state & 1) mem.writeU32LE(addr, state >>> 0);
  else mem.writeSlice(addr, new Uint8Array([1, 2, 3, 4]));
  written.push(page);
}
const log = Uint32Array.from(written);
parentPort!.postMessage(log, [log.buffer]);
