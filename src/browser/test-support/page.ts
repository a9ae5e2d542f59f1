/**
 * What the browser test's page does (in headless chromium, loaded as native ES modules through
 * an import map): guest memory of several regions, typed accesses, dirty tracking, a virtqueue
 * round trip, and, where the page is cross-origin isolated, memory shared with a worker;
 * elsewhere the typed error for shared memory. It POSTs what it saw to /result.
 */
import {
  AtomicBitmap,
  GuestAddress,
  type GuestMemoryDescription,
  GuestMemory,
  GuestMemoryRegion,
  GuestmemError,
  heapBackend,
  shareGuestMemory,
  sharedBackend,
  structLayout,
  u16le,
  u32le,
  u64leNumber,
} from 'guestmem';
import { splitChain, SplitQueue, VirtqueueDriver } from 'guestmem/virtio';

/** The browser globals used here (the project compiles without the DOM library). */
declare const crossOriginIsolated: boolean;
declare class Worker {
  constructor(url: URL, options: { type: 'module' });
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: { message: string }) => void) | null;
  postMessage(message: unknown): void;
  terminate(): void;
}

const G = GuestAddress;
const hex = (n: number) => `0x${n.toString(16)}`;
const dirtyRanges = (memory: GuestMemory) => memory.harvestDirty().map((r) => [hex(r.start), hex(r.length)]);

/** Three regions (two adjacent, one after a hole), each with its own dirty bitmap. */
function multiRegion() {
  const region = (start: number, size: number) => new GuestMemoryRegion(G(start), heapBackend(size), { bitmap: new AtomicBitmap(size) });
  const memory = GuestMemory.fromRegions([region(0, 0x8000), region(0x8000, 0x8000), region(0x11000, 0x10000)]);
  memory.writeU64LE(G(0x7ffc), 0x1122334455667788n); // across the boundary of the first two
  memory.writeF64BE(G(0x11008), Math.PI);
  memory.writeI16LE(G(0x11010), -2);
  const Desc = structLayout('virtq_desc', { addr: u64leNumber, len: u32le, flags: u16le, next: u16le });
  memory.writeStruct(Desc, G(0x11100), { addr: 0x11400, len: 512, flags: 1, next: 1 });
  let hole: string | undefined;
  try {
    memory.readSlice(G(0xfff0), new Uint8Array(32));
  } catch (e) {
    hole = (e as GuestmemError).code;
  }
  return {
    memory: String(memory),
    straddling: hex(memory.readU32BE(G(0x7ffe))),
    f64be: memory.readF64BE(G(0x11008)),
    i16le: memory.readI16LE(G(0x11010)),
    struct: memory.readStruct(Desc, G(0x11100)),
    partialAtHole: memory.read(G(0xfff0), new Uint8Array(32)),
    exactAtHole: hole,
    dirty: dirtyRanges(memory),
    dirtyAfterHarvest: dirtyRanges(memory),
  };
}

/** The driver posts a request, the device answers it through the same guest memory. */
function virtqueue() {
  const memory = GuestMemory.fromRanges([
    [G(0), 0x10000],
    [G(0x20000), 0x10000],
  ]);
  const driver = new VirtqueueDriver(memory, { size: 16, dataBase: G(0x20000), dataSize: 0x10000 });
  const queue = new SplitQueue(memory, driver.queueConfig());
  const posted = driver.post([new TextEncoder().encode('ping from the driver')], [32]);
  driver.kick();
  const chain = queue.pop();
  if (chain === undefined) throw new Error('the device found no chain');
  const { reader, writer } = splitChain(chain);
  const request = new Uint8Array(reader.length);
  reader.readAt(0, request);
  const reply = new TextEncoder().encode(`pong to "${new TextDecoder().decode(request)}"`);
  writer.writeAllAt(0, reply);
  queue.addUsed(chain.head, reply.length);
  const used = driver.used();
  return {
    used,
    head: posted.head,
    reply: new TextDecoder().decode(driver.read(posted.writable[0]).subarray(0, used[0].len)),
  };
}

/** Shared memory and a shared bitmap, rebuilt in a worker that writes into both. */
async function sharedWithWorker() {
  const size = 0x40000;
  const region = new GuestMemoryRegion(G(0x100000), sharedBackend(size), { bitmap: new AtomicBitmap(size, { shared: true }) });
  const memory = GuestMemory.fromRegions([region]);
  memory.writeU32LE(G(0x100000), 0xc0ffee);
  memory.resetDirty();
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const reply = await new Promise<unknown>((resolve, reject) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.onerror = (e) => reject(new Error(`worker: ${e.message}`));
    worker.postMessage(shareGuestMemory(memory) satisfies GuestMemoryDescription);
  });
  worker.terminate();
  return { worker: reply, seen: hex(Number(memory.readU64LE(G(0x120000)) & 0xffffffffn)), dirty: dirtyRanges(memory) };
}

/** What shared memory does where there is no SharedArrayBuffer. */
function sharedRefused() {
  const attempt = (fn: () => unknown) => {
    try {
      fn();
      return { ok: true };
    } catch (e) {
      const err = e as GuestmemError;
      return { name: err.name, code: err.code, message: err.message, typed: err instanceof GuestmemError };
    }
  };
  return {
    backend: attempt(() => sharedBackend(0x10000)),
    bitmap: attempt(() => new AtomicBitmap(0x10000, { shared: true })),
  };
}

async function main() {
  const isolated = crossOriginIsolated;
  const result: Record<string, unknown> = { isolated, sharedArrayBuffer: typeof SharedArrayBuffer };
  result.multiRegion = multiRegion();
  result.virtqueue = virtqueue();
  if (isolated) result.shared = await sharedWithWorker();
  else result.refused = sharedRefused();
  return result;
}

const post = (body: unknown) =>
  fetch('/result', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
main().then(post, (e: Error) => post({ error: e.stack ?? String(e) }));
