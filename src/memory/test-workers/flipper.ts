/** Worker of single-access.test.ts: flips small copies in the memory it is sent until told to stop. */
import { parentPort, workerData } from 'node:worker_threads';
import { flip } from '../../test-support/flip.js';
import { type GuestMemoryDescription, rebuildGuestMemory } from '../share.js';

const { description, stop } = workerData as { description: GuestMemoryDescription; stop: Int32Array };
const mem = rebuildGuestMemory(description);
let rounds = 0;
parentPort?.postMessage('ready');
while (Atomics.load(stop, 0) === 0) {
  flip(mem, 1000);
  rounds += 1000;
}
parentPort?.postMessage(rounds);
