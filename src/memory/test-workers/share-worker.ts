/** Worker of share.test.ts: rebuilds the guest memory it is sent and runs the exchange plan. */
import { parentPort, workerData } from 'node:worker_threads';
import { type ExchangePlan, exchange } from '../../test-support/share-exchange.js';
import { type GuestMemoryDescription, rebuildGuestMemory } from '../share.js';

const { description, plan } = workerData as { description: GuestMemoryDescription; plan: ExchangePlan };
parentPort?.postMessage(exchange(rebuildGuestMemory(description), plan));
