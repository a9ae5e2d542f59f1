/**
 * Child process of resolver.test.ts: argv[2] is JSON `{ description, fds, plan }`, the memfds
 * and files inherited from fd 3 on; rebuilds the guest memory, runs the exchange, prints JSON.
 */
import { rebuildGuestMemory } from '../../memory/share.js';
import { exchange } from '../../test-support/share-exchange.js';
import { MmapResolver } from '../index.js';

const { description, fds, plan } = JSON.parse(process.argv[2]);
using mmap = new MmapResolver({ fds });
const report = exchange(rebuildGuestMemory(description, { resolvers: mmap.resolvers }), plan);
process.stdout.write(JSON.stringify({ ...report, mappings: mmap.backends().length }));
