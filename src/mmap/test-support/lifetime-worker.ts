/**
 * Worker side of lifetime-child.ts: holds views of the owner's memory and does, on request,
 * the things that crash a naive addon while the owner closes and collects.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MmapBackend, type MmapSharedDescription } from '../index.js';

const gc = (globalThis as { gc?: () => void }).gc as () => void;
let backend: MmapBackend | undefined = MmapBackend.fromShared(workerData as MmapSharedDescription);
let raw: Uint8Array | undefined = backend.views().u8;

/** Reads one byte of every page: a fault on unmapped memory would kill the process. */
function sum(u8: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < u8.length; i += 4096) s += u8[i];
  return s;
}

const actions: Record<string, () => unknown> = {
  sum: () => sum(raw as Uint8Array),
  /** Reads for 300 ms without a pause while the owner closes and collects. */
  spin: () => {
    const until = Date.now() + 300;
    let rounds = 0;
    let total = 0;
    while (Date.now() < until) {
      total = sum(raw as Uint8Array);
      rounds++;
    }
    return { rounds, total };
  },
  /** Lets the backend go without closing it; the raw view alone keeps the memory. */
  dropBackend: () => {
    backend = undefined;
    gc();
    return true;
  },
  dropView: () => {
    raw = undefined;
    gc();
    return true;
  },
};

parentPort?.on('message', (action: string) => {
  parentPort?.postMessage(actions[action]());
  if (raw === undefined) setImmediate(gc); // let the finalizers of the dropped view run
});
parentPort?.postMessage('ready');
