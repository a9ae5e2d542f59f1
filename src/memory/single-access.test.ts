import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { FLIP_RANGES, prepareFlip, readFlips } from '../test-support/flip.js';
import { GuestMemory } from './guest-memory.js';
import { shareGuestMemory } from './share.js';

// Before small copies were single accesses this saw tears of every kind within 2.5 s (and
// thousands in 10 s); GUESTMEM_TEAR_MS runs it longer. On a busy machine it reads on (up to
// 10 s) until it has seen the writer change each kind of value 10 000 times.
const READ_MS = Number(process.env.GUESTMEM_TEAR_MS ?? 2500);
const MAX_MS = Math.max(READ_MS, 10_000);
const MIN_CHANGES = 10_000;

test('small copies, a struct straddling two regions and slice copies never come back torn while another worker writes them', async () => {
  const mem = GuestMemory.fromRanges(FLIP_RANGES, { shared: true });
  prepareFlip(mem);
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./test-workers/flipper.js', import.meta.url), {
    workerData: { description: shareGuestMemory(mem), stop },
  });
  try {
    await once(worker, 'message');
    const report = readFlips(mem, READ_MS, MAX_MS, MIN_CHANGES);
    Atomics.store(stop, 0, 1);
    const [rounds] = (await once(worker, 'message')) as [number];
    console.log(`writer rounds ${rounds}; ${JSON.stringify(report)}`);
    for (const [kind, count] of Object.entries(report)) {
      assert.ok(count.changes > 0, `${kind}: the reader saw the writer change values (else nothing was tested)`);
      assert.equal(count.torn, 0, `${kind}: ${count.torn} of ${count.pieces} aligned pieces torn`);
    }
  } finally {
    Atomics.store(stop, 0, 1);
    await worker.terminate();
  }
});
