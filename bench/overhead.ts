/**
 * What guestmem costs besides access time: memory per GiB of guest RAM (dirty bitmaps, region
 * objects and lookup tables), the time to build a GuestMemory of 1 / 64 / 1024 regions, and
 * whether the hot path allocates (garbage collections during 10 M accesses).
 *
 * Run with `node --expose-gc build/bench/overhead.js` (npm run bench does). Prints INFO lines in
 * the peer-bench format and a readable summary on stderr.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { adoptBackend, AtomicBitmap, GuestAddress, GuestMemory, GuestMemoryRegion, type MemoryBackend } from 'guestmem';

const GIB = 2 ** 30;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const info = (key: string, value: string): void => {
  process.stdout.write(`INFO\tguestmem\t${key}\t${value}\n`);
  process.stderr.write(`  ${key.padEnd(44)} ${value}\n`);
};

function settle(): { heap: number; external: number } {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.arrayBuffers };
}

/** 1 GiB of guest RAM as `n` regions over one buffer (the buffer is not guestmem's cost). */
const ram = new Uint8Array(new ArrayBuffer(GIB));
function backendsFor(n: number): MemoryBackend[] {
  const size = GIB / n;
  return Array.from({ length: n }, (_, i) => adoptBackend(ram.subarray(i * size, (i + 1) * size)));
}
function build(backends: MemoryBackend[], tracked: boolean): GuestMemory {
  const size = GIB / backends.length;
  return GuestMemory.fromRegions(
    backends.map((b, i) => new GuestMemoryRegion(GuestAddress(i * (size + 4096)), b, tracked ? { bitmap: new AtomicBitmap(size) } : {})),
  );
}

// ---- memory per GiB: K copies kept alive (more for small layouts), so that the per-copy delta stands out of the noise
for (const n of [1, 64, 1024]) {
  const K = Math.max(16, 4096 / n);
  const backends = backendsFor(n);
  build(backends, true); // compile and cache everything once
  const keep: GuestMemory[] = [];
  const before = settle();
  for (let k = 0; k < K; k++) keep.push(build(backends, false));
  const plain = settle();
  for (let k = 0; k < K; k++) keep.push(build(backends, true));
  const tracked = settle();
  // Heap objects plus the typed arrays' backing stores (the lookup directory, the bounds).
  const tables = (plain.heap + plain.external - before.heap - before.external) / K;
  const bitmapHeap = (tracked.heap - plain.heap) / K - tables;
  info(`memory_per_GiB.regions_and_tables.r${n}`, `${tables.toFixed(0)} B (${(tables / n).toFixed(0)} B per region)`);
  info(`memory_per_GiB.bitmap_4k_pages.r${n}`, `${((tracked.external - plain.external) / K).toFixed(0)} B of bits and byte marks + ${bitmapHeap.toFixed(0)} B of objects`);
  if (keep.length !== 2 * K) throw new Error('unreachable');
}

// ---- build time
for (const n of [1, 64, 1024]) {
  const backends = backendsFor(n);
  const times: number[] = [];
  const reps = n === 1024 ? 21 : 101;
  for (let r = 0; r < reps; r++) {
    const t = process.hrtime.bigint();
    const mem = build(backends, false);
    times.push(Number(process.hrtime.bigint() - t));
    if (mem.numRegions !== n) throw new Error('wrong region count');
  }
  times.sort((a, b) => a - b);
  info(`build_time.fromRegions.r${n}`, `${(times[reps >> 1] / 1e3).toFixed(1)} us (median of ${reps}, regions included, backends not)`);
}

// ---- allocation on the hot path
async function gcsDuring(f: () => void): Promise<number> {
  let count = 0;
  const obs = new PerformanceObserver((list) => {
    count += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  f();
  await new Promise((resolve) => setTimeout(resolve, 50));
  obs.disconnect();
  return count;
}
{
  const mem = build(backendsFor(1), true);
  const addrs = Uint32Array.from({ length: 1024 }, (_, k) => ((k * 0x9e3779b1) >>> 0) % GIB & ~7);
  let acc = 0;
  const warm = (): void => {
    for (let k = 0; k < 1_000_000; k++) {
      acc ^= mem.readU32LE(addrs[k & 1023] as GuestAddress);
      mem.writeU32LE(addrs[k & 1023] as GuestAddress, k);
    }
  };
  warm();
  warm();
  gc();
  const reads = await gcsDuring(() => {
    for (let k = 0; k < 10_000_000; k++) acc ^= mem.readU32LE(addrs[k & 1023] as GuestAddress);
  });
  gc();
  const writes = await gcsDuring(() => {
    for (let k = 0; k < 10_000_000; k++) mem.writeU32LE(addrs[k & 1023] as GuestAddress, k >>> 0);
  });
  info('gc_during_10M.readU32LE.r1_tracked', String(reads));
  info('gc_during_10M.writeU32LE.r1_tracked', String(writes));
  if (acc === 0.5) console.log(acc);
}
