/** Worker: rebuilds guest memory over the shared buffers it is sent and hammers one counter. */
import { parentPort, workerData } from 'node:worker_threads';
import { GuestAddress } from '../../address/address.js';
import { sharedBackend } from '../../backend/buffer.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { GuestMemoryRegion } from '../../region/region.js';

const { regions, iterations } = workerData as { regions: { start: number; buffer: SharedArrayBuffer }[]; iterations: number };
const mem = GuestMemory.fromRegions(regions.map((r) => new GuestMemoryRegion(GuestAddress(r.start), sharedBackend(r.buffer))));
const counter32 = GuestAddress(0x1000 + 8);
const counter64 = GuestAddress(0x3000);
for (let i = 0; i < iterations; i++) {
  // compareExchange loops: a lost update would show as a short total.
  for (;;) {
    const old = mem.loadU32(counter32);
    if (mem.compareExchangeU32(counter32, old, old + 1) === old) break;
  }
  for (;;) {
    const old = mem.loadU64(counter64);
    if (mem.compareExchangeU64(counter64, old, old + 1n) === old) break;
  }
}
mem.storeU8(GuestAddress(0x3100 + (workerData.index as number)), 1);
parentPort?.postMessage('done');
