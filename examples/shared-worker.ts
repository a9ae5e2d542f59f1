/**
 * Guest RAM in a memfd, shared with a worker thread: the worker rebuilds the same guest memory
 * from a plain description (never the external ArrayBuffer itself), acts as a device that DMAs
 * into guest memory, and its writes land in the same pages and the same dirty bitmap the main
 * thread harvests. This one file is both the main thread and the worker.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { GuestAddress, type GuestMemoryDescription, rebuildGuestMemory, shareGuestMemory } from 'guestmem';
import { MmapBackend, MmapResolver, mmapGuestMemory } from 'guestmem/mmap';

const G = GuestAddress;
const MIB = 1 << 20;

if (isMainThread) {
  using ram = MmapBackend.memfd(64 * MIB);
  const mem = mmapGuestMemory([[G(0), ram]], { bitmap: { shared: true } });
  console.log(`guest memory: ${mem}, memfd fd ${ram.fd}`);
  mem.writeU32LE(G(0x1000), 0xc0ffee);
  mem.resetDirty(); // what the main thread wrote before the worker starts is the baseline

  const description: GuestMemoryDescription = shareGuestMemory(mem);
  const worker = new Worker(new URL(import.meta.url), { workerData: description });
  const reply = await new Promise<string>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  console.log(`worker: ${reply}`);

  const seen = mem.readU64LE(G(0x20_0000));
  const dirty = mem.harvestDirty().map((r) => `[0x${r.start.toString(16)}, +0x${r.length.toString(16)})`);
  console.log(`main thread reads the worker's u64 at 0x200000: 0x${seen.toString(16)}`);
  console.log(`pages the worker dirtied, harvested by the main thread: ${dirty.join(' ')}`);
  if (seen !== 0x1122334455667788n || dirty.length !== 2) throw new Error('the worker did not write the shared memory');
  await worker.terminate();
} else {
  using mmap = new MmapResolver();
  const mem = rebuildGuestMemory(workerData as GuestMemoryDescription, { resolvers: mmap.resolvers });
  const fromMain = mem.readU32LE(G(0x1000));
  mem.writeU64LE(G(0x20_0000), 0x1122334455667788n); // a "device" writes a completion
  mem.fill(G(0x30_0000), 3 * 4096, 0xab); // and three pages of data
  parentPort?.postMessage(`rebuilt ${mem}, read 0x${fromMain.toString(16)} written by the main thread, wrote 0x200000 and 0x300000..0x303000`);
}
