/**
 * Run by lifetime.test.ts as `node --expose-gc lifetime-child.js`: drives the close / GC /
 * worker-exit orders that crash an addon whose finalizer unmaps memory another thread still
 * reads. Prints a JSON object of named checks; the process must also survive and exit 0.
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { MmapBackend } from '../index.js';
import { isMapped } from './proc.js';

const gc = (globalThis as { gc?: () => void }).gc as () => void;
const SIZE = 64 << 20;
const workerUrl = new URL('./lifetime-worker.js', import.meta.url);
const checks: Record<string, unknown> = {};

/** Collects and lets finalizers run until the mapping at `address` is gone (or 3 s passed). */
async function unmapped(address: bigint): Promise<boolean> {
  for (const until = Date.now() + 3000; Date.now() < until; ) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
    if (!isMapped(address)) return true;
  }
  return false;
}

/** A few rounds of GC, each followed by a turn of the event loop for the finalizers. */
async function collect(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function filled(): { b: MmapBackend; expected: number } {
  const b = MmapBackend.anonymous(SIZE);
  const u8 = b.views().u8;
  for (let i = 0; i < SIZE; i += 4096) u8[i] = 1;
  return { b, expected: SIZE / 4096 };
}

/** A raw view of a backend that nothing references any more. */
function rawViewOnly(): { raw: Uint8Array | undefined; address: bigint; expected: number } {
  const { b, expected } = filled();
  return { raw: b.views().u8, address: b.address, expected };
}

async function start(b: MmapBackend): Promise<{ worker: Worker; ask: (action: string) => Promise<unknown> }> {
  const worker = new Worker(workerUrl, { workerData: b.share() });
  await once(worker, 'message');
  const ask = async (action: string) => {
    worker.postMessage(action);
    return (await once(worker, 'message'))[0];
  };
  return { worker, ask };
}

// 1. The research crash: a worker reads while the owner closes and its GC runs.
{
  const { b, expected } = filled();
  const address = b.address;
  const { worker, ask } = await start(b);
  const spinning = ask('spin');
  b.close();
  await collect();
  const { total } = (await spinning) as { total: number };
  checks.workerReadWhileOwnerClosed = total === expected;
  checks.stillMappedForWorker = isMapped(address);
  await worker.terminate();
  checks.unmappedAfterWorkerExit = await unmapped(address);
}

// 2. The worker drops its backend unclosed (and collects it) but keeps a raw view.
{
  const { b, expected } = filled();
  const address = b.address;
  const { worker, ask } = await start(b);
  await ask('dropBackend');
  b.close();
  await collect();
  checks.mappedForRawView = isMapped(address);
  checks.rawViewOutlivesBackends = (await ask('sum')) === expected;
  await ask('dropView');
  checks.unmappedAfterLastView = await unmapped(address);
  await worker.terminate();
}

// 3. The worker is terminated while holding views; then the owner closes.
{
  const { b } = filled();
  const address = b.address;
  const { worker } = await start(b);
  await worker.terminate();
  checks.mappedWhileOwnerOpen = isMapped(address);
  b.close();
  checks.unmappedAfterTerminateThenClose = await unmapped(address);
}

// 4. No close at all: the owner's backend is collected, a raw view keeps the memory.
{
  const held = rawViewOnly();
  await collect();
  let s = 0;
  for (let i = 0; i < SIZE; i += 4096) s += (held.raw as Uint8Array)[i];
  checks.rawViewOutlivesCollectedBackend = s === held.expected;
  held.raw = undefined;
  checks.unmappedAfterCollection = await unmapped(held.address);
}

process.stdout.write(JSON.stringify(checks));
