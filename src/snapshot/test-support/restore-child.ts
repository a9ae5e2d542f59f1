/**
 * Child process of snapshot.test.ts: runs one restore or merge of hostile files (FIFOs, devices,
 * directories) that a broken build would block on, so that the parent can kill it after a
 * timeout. argv[2] is `{ op, path, diffs }`; restores go into one page of memory filled with 0xa5.
 * Prints `{ code, unchanged }`: the error's code (or null) and whether memory kept its bytes.
 */
import { GuestAddress } from '../../address/address.js';
import { heapBackend } from '../../backend/buffer.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { GuestMemoryRegion } from '../../region/region.js';
import { mergeSnapshots, restoreSnapshot } from '../restore.js';

const { op, path, diffs } = JSON.parse(process.argv[2]) as { op: 'restore' | 'merge'; path: string; diffs: string[] };
const backend = heapBackend(4096);
const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), backend)]);
const bytes = backend.views().u8;
bytes.fill(0xa5);
let code: string | null = null;
try {
  if (op === 'restore') restoreSnapshot(mem, path, { diffs });
  else mergeSnapshots(path, { diffs });
} catch (err) {
  code = (err as { code?: string }).code ?? String(err);
}
process.stdout.write(JSON.stringify({ code, unchanged: bytes.every((b) => b === 0xa5) }));
