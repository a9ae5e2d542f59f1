/**
 * Worker side of share.test.ts: rebuilds the owner's memory from its description, reports what
 * the owner wrote, writes an answer, then races the owner on one counter with Atomics.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MmapBackend, type MmapSharedDescription } from '../index.js';

const { description, rounds } = workerData as { description: MmapSharedDescription; rounds: number };
using b = MmapBackend.fromShared(description);
const { u8, i32 } = b.views();
const seen = Array.from(u8.subarray(0, 8));
u8.set([9, 8, 7, 6], 8);
// Start barrier: say we are here (word 4), wait for the owner's go (word 5), then count (word 6).
Atomics.store(i32, 4, 1);
const deadline = Date.now() + 10_000;
while (Atomics.load(i32, 5) === 0 && Date.now() < deadline);
for (let i = 0; i < rounds; i++) Atomics.add(i32, 6, 1);
parentPort?.postMessage({ seen, address: b.address });
