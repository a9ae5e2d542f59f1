/** Worker of resolver.test.ts: rebuilds mmap'd guest memory from its description, runs the exchange. */
import { parentPort, workerData } from 'node:worker_threads';
import { type GuestMemoryDescription, rebuildGuestMemory } from '../../memory/share.js';
import { type ExchangePlan, exchange } from '../../test-support/share-exchange.js';
import { MmapResolver } from '../index.js';

const { description, plan } = workerData as { description: GuestMemoryDescription; plan: ExchangePlan };
using mmap = new MmapResolver();
const report = exchange(rebuildGuestMemory(description, { resolvers: mmap.resolvers }), plan);
parentPort?.postMessage({ ...report, mappings: mmap.backends().length });
