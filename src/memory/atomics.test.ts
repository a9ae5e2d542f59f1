import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { GuestAddress } from '../address/address.js';
import { GuestMemory } from './guest-memory.js';

test('atomic compareExchange from several workers on shared guest memory loses no update', async () => {
  const mem = GuestMemory.fromRanges([[GuestAddress(0x1000), 0x1000], [GuestAddress(0x3000), 0x1000]], { shared: true });
  const regions = mem.regions().map((r) => ({ start: r.start, buffer: r.backend.views().buffer as SharedArrayBuffer }));
  const workers = 4;
  const iterations = 20_000;
  const running = Array.from({ length: workers }, (_, index) => {
    const w = new Worker(new URL('./test-workers/atomic-adder.js', import.meta.url), { workerData: { regions, iterations, index } });
    return once(w, 'message');
  });
  await Promise.all(running);
  assert.equal(mem.loadU32(GuestAddress(0x1008)), workers * iterations);
  assert.equal(mem.loadU64(GuestAddress(0x3000)), BigInt(workers * iterations));
  for (let i = 0; i < workers; i++) assert.equal(mem.loadU8(GuestAddress(0x3100 + i)), 1, `worker ${i} stored its flag`);
});
