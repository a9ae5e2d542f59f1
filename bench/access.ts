/**
 * Quick micro-benchmark of typed access at random guest addresses: guestmem against a raw
 * DataView on the same 256 MiB, in one run. Layouts, address tables and the timing protocol
 * follow ../shared/peer-bench/OPERATIONS.md (L1 / L8, xorshift32 seed 42, hot = 1024 addresses,
 * cold = 2^20; calibrate to >= 200 ms per repetition, 600 ms warm-up, 5 repetitions, median).
 * It also counts garbage collections during 10 M accesses: the hot path must allocate nothing.
 *
 * Run: npm run bench   (knobs: BENCH_REPS, BENCH_MIN_MS, BENCH_FILTER)
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { GuestAddress, GuestMemory, GuestMemoryRegion } from 'guestmem';
import { MmapBackend } from 'guestmem/mmap';

const MIB = 1 << 20;
const MEM_SIZE = 256 * MIB;
const HOLE = 4096;
const TABLE_LEN = 1 << 20;
const VAL32 = 0x89abcdef;
const REPS = Number(process.env.BENCH_REPS ?? 5);
const MIN_NS = Number(process.env.BENCH_MIN_MS ?? 200) * 1e6;
const WARM_NS = 600e6;
const FILTER = process.env.BENCH_FILTER ?? '';

type Op = (start: number, n: number) => number;

function table(regions: number): Uint32Array {
  const size = MEM_SIZE / regions;
  const hole = regions === 1 ? 0 : HOLE;
  const t = new Uint32Array(TABLE_LEN);
  let x = 42;
  for (let k = 0; k < TABLE_LEN; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const o = x & (MEM_SIZE - 8);
    t[k] = o + Math.floor(o / size) * hole;
  }
  return t;
}

function layout(regions: number): GuestMemory {
  const size = MEM_SIZE / regions;
  const hole = regions === 1 ? 0 : HOLE;
  const mem = GuestMemory.fromRanges(Array.from({ length: regions }, (_, i) => [GuestAddress(i * (size + hole)), size] as const));
  for (const r of mem.regions()) r.fill(0 as never, r.length, 0x5a);
  return mem;
}

const now = () => Number(process.hrtime.bigint());
let sink = 0;

function run(id: string, f: Op): number | undefined {
  if (FILTER && !FILTER.split(',').some((p) => id.includes(p))) return undefined;
  let cursor = 0;
  const t0 = now();
  let n = 1;
  let dt: number;
  for (;;) {
    const t = now();
    sink ^= f(cursor, n);
    dt = now() - t;
    cursor = (cursor + n) % 2 ** 30;
    if (dt >= 20e6) break;
    n *= 2;
  }
  n = Math.ceil((n * 1.2 * MIN_NS) / dt);
  do {
    sink ^= f(cursor, n);
    cursor = (cursor + n) % 2 ** 30;
  } while (now() - t0 < WARM_NS);
  const samples: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t = now();
    sink ^= f(cursor, n);
    samples.push((now() - t) / n);
    cursor = (cursor + n) % 2 ** 30;
  }
  const median = samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
  console.log(`${id.padEnd(30)} ${median.toFixed(2).padStart(8)} ns/op`);
  return median;
}

/** Garbage collections seen while `f` runs 10 M operations. */
async function gcsDuring(f: Op): Promise<number> {
  let count = 0;
  const obs = new PerformanceObserver((list) => {
    count += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  sink ^= f(0, 10_000_000);
  await new Promise((resolve) => setTimeout(resolve, 50));
  obs.disconnect();
  return count;
}

const ab = new ArrayBuffer(MEM_SIZE);
new Uint8Array(ab).fill(0x5a);
const dv = new DataView(ab);
const t1 = table(1);
const t8 = table(8);
const m1 = layout(1);
const m8 = layout(8);
// The same L1 layout on mmap'd anonymous memory (the native addon), prefaulted the same way.
const mmapBackend = MmapBackend.anonymous(MEM_SIZE);
const mm = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), mmapBackend)]);
mm.fill(GuestAddress(0), MEM_SIZE, 0x5a);

// Each operation is its own function literal so that V8 keeps its feedback monomorphic.
const ops: [string, Op][] = [
  ['raw.read.u32.r1.hot', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= dv.getUint32(t1[k & 1023], true); return acc; }],
  ['gm.read.u32.r1.hot', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= m1.readU32LE(t1[k & 1023] as GuestAddress); return acc; }],
  ['gm-mmap.read.u32.r1.hot', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= mm.readU32LE(t1[k & 1023] as GuestAddress); return acc; }],
  ['gm.read.u32.r8.hot', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= m8.readU32LE(t8[k & 1023] as GuestAddress); return acc; }],
  ['raw.write.u32.r1.hot', (s, n) => { for (let k = s; k < s + n; k++) dv.setUint32(t1[k & 1023], VAL32, true); return 0; }],
  ['gm.write.u32.r1.hot', (s, n) => { for (let k = s; k < s + n; k++) m1.writeU32LE(t1[k & 1023] as GuestAddress, VAL32); return 0; }],
  ['gm-mmap.write.u32.r1.hot', (s, n) => { for (let k = s; k < s + n; k++) mm.writeU32LE(t1[k & 1023] as GuestAddress, VAL32); return 0; }],
  ['gm.write.u32.r8.hot', (s, n) => { for (let k = s; k < s + n; k++) m8.writeU32LE(t8[k & 1023] as GuestAddress, VAL32); return 0; }],
  ['raw.read.u32.r1', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= dv.getUint32(t1[k & (TABLE_LEN - 1)], true); return acc; }],
  ['gm.read.u32.r1', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= m1.readU32LE(t1[k & (TABLE_LEN - 1)] as GuestAddress); return acc; }],
  ['gm-mmap.read.u32.r1', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= mm.readU32LE(t1[k & (TABLE_LEN - 1)] as GuestAddress); return acc; }],
  ['gm.read.u32.r8', (s, n) => { let acc = 0; for (let k = s; k < s + n; k++) acc ^= m8.readU32LE(t8[k & (TABLE_LEN - 1)] as GuestAddress); return acc; }],
  ['raw.write.u32.r1', (s, n) => { for (let k = s; k < s + n; k++) dv.setUint32(t1[k & (TABLE_LEN - 1)], VAL32, true); return 0; }],
  ['gm.write.u32.r1', (s, n) => { for (let k = s; k < s + n; k++) m1.writeU32LE(t1[k & (TABLE_LEN - 1)] as GuestAddress, VAL32); return 0; }],
  ['gm-mmap.write.u32.r1', (s, n) => { for (let k = s; k < s + n; k++) mm.writeU32LE(t1[k & (TABLE_LEN - 1)] as GuestAddress, VAL32); return 0; }],
  ['gm.write.u32.r8', (s, n) => { for (let k = s; k < s + n; k++) m8.writeU32LE(t8[k & (TABLE_LEN - 1)] as GuestAddress, VAL32); return 0; }],
];

console.log(`guestmem access micro-benchmark, Node ${process.version}, median of ${REPS}`);
const results = new Map<string, number>();
for (const [id, f] of ops) {
  const m = run(id, f);
  if (m !== undefined) results.set(id, m);
}
console.log('\nratios guestmem / raw DataView (same run):');
for (const [id, m] of results) {
  if (!id.startsWith('gm')) continue;
  const raw = results.get(id.replace(/^gm(-mmap)?\./, 'raw.').replace(/\.r8/, '.r1'));
  if (raw !== undefined) console.log(`${id.padEnd(30)} ${(m / raw).toFixed(2).padStart(8)}x`);
}
console.log('\ngarbage collections during 10 M accesses (0 = the path allocates nothing):');
for (const [id, f] of ops.filter(([id]) => id.endsWith('.hot') && id.includes('r1'))) {
  console.log(`${id.padEnd(30)} ${String(await gcsDuring(f)).padStart(8)}`);
}
mmapBackend.close();
if (sink === 0.5) console.log(sink);
