/**
 * Worker for the bitmap stress test: marks its share of pages of a shared bitmap, each at most
 * once, and posts back the list of pages it marked.
 *
 * Worker `w` of `n` owns pages `w, w + n, w + 2n, ...` and walks them in order, so that all
 * workers keep hitting the same 32-bit words at the same time; a seeded generator skips some
 * pages and picks where in the page the small write lands.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AtomicBitmap, type SharedBitmapDescription } from '../atomic-bitmap.js';

export interface MarkPagesData {
  description: SharedBitmapDescription;
  worker: number;
  workers: number;
  seed: number;
  /** An Int32Array word that turns 1 when all workers may start. */
  go: SharedArrayBuffer;
}

const { description, worker, workers, seed, go } = workerData as MarkPagesData;
const bitmap = AtomicBitmap.fromShared(description);
const { pageSize, pageCount } = bitmap;
const marked: number[] = [];
let state = seed | 1;
Atomics.wait(new Int32Array(go), 0, 0); // start together, so that marks overlap as much as they can
for (let page = worker; page < pageCount; page += workers) {
  // xorshift32
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  if ((state & 7) === 0) continue;
  bitmap.markDirty(page * pageSize + ((state >>> 8) % (pageSize - 8)), 1 + ((state >>> 3) & 7));
  marked.push(page);
}
const log = Uint32Array.from(marked);
parentPort!.postMessage(log, [log.buffer]);
