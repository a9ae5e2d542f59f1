/**
 * Memory manager benchmarks, in one run:
 * - dispatch: `manager.read(addr, 4)` to RAM and to an MMIO handler, against a raw DataView read
 *   of the same RAM (and the core's GuestMemory.readU32LE) and a direct call of the same handler
 *   (1024 random aligned addresses);
 * - flat-view recomputation: one layout change (unmap, then map a region) with 10, 100 and 1000
 *   regions, each change recomputing the flat view, the dispatch table and the guest memory.
 * Timing: calibrate to >= BENCH_MIN_MS per repetition, 300 ms warm-up, BENCH_REPS repetitions,
 * median. Absolute figures on a shared machine are noise; read the ratios.
 *
 * Run: npm run bench:manager   (knobs: BENCH_REPS, BENCH_MIN_MS)
 */
import { GuestAddress, MemoryBacking, MemoryManager, type Region } from 'guestmem';

const MIB = 2 ** 20;
const RAM = 16 * MIB;
const REPS = Number(process.env.BENCH_REPS ?? 5);
const MIN_NS = Number(process.env.BENCH_MIN_MS ?? 200) * 1e6;
const WARM_NS = 300e6;
const now = () => Number(process.hrtime.bigint());
let sink = 0;

type Op = (n: number) => number;

function run(id: string, f: Op): number {
  let n = 1;
  let dt: number;
  for (;;) {
    const t = now();
    sink ^= f(n);
    dt = now() - t;
    if (dt >= 20e6) break;
    n *= 2;
  }
  n = Math.max(1, Math.ceil((n * MIN_NS) / dt));
  const t0 = now();
  do sink ^= f(n);
  while (now() - t0 < WARM_NS);
  const samples: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t = now();
    sink ^= f(n);
    samples.push((now() - t) / n);
  }
  const median = samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
  console.log(`${id.padEnd(34)} ${fmt(median).padStart(12)}`);
  return median;
}

function fmt(ns: number): string {
  return ns < 1e3 ? `${ns.toFixed(2)} ns/op` : ns < 1e6 ? `${(ns / 1e3).toFixed(2)} µs/op` : `${(ns / 1e6).toFixed(2)} ms/op`;
}

// xorshift32, seed 42: 1024 aligned addresses in RAM and 1024 in the MMIO window.
const addrs = new Uint32Array(1024);
const mmioAddrs = new Float64Array(1024);
for (let k = 0, x = 42; k < 1024; k++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  addrs[k] = x & (RAM - 4);
  mmioAddrs[k] = 0xfe00_0000 + (x & 0xffc);
}

const backing = MemoryBacking.allocate(RAM);
const dv = backing.chunks[0].views().dv;
for (let i = 0; i < RAM; i += 4) dv.setUint32(i, i, true);
const regs = new Uint32Array(1024).map((_, i) => i * 0x01010101);
const handler = { read: (offset: number, _size: number) => regs[offset >>> 2], write: () => {} };
const mm = new MemoryManager();
mm.addRam({ name: 'ram', start: GuestAddress(0), length: RAM, backing });
mm.addMmio({ name: 'dev', start: GuestAddress(0xfe00_0000), length: 0x1000, handler, accessSizes: [4] });

console.log(`guestmem memory manager benchmark, Node ${process.version}, median of ${REPS} (shared machine)`);
const raw = run('raw DataView getUint32', (n) => {
  let acc = 0;
  for (let k = 0; k < n; k++) acc ^= dv.getUint32(addrs[k & 1023], true);
  return acc;
});
const ram = run('manager.read(addr, 4) RAM', (n) => {
  let acc = 0;
  for (let k = 0; k < n; k++) acc ^= mm.read(addrs[k & 1023] as GuestAddress, 4);
  return acc;
});
const memory = mm.memory();
const core = run('GuestMemory.readU32LE (core)', (n) => {
  let acc = 0;
  for (let k = 0; k < n; k++) acc ^= memory.readU32LE(addrs[k & 1023] as GuestAddress);
  return acc;
});
const direct = run('handler.read(offset, 4) direct', (n) => {
  let acc = 0;
  for (let k = 0; k < n; k++) acc ^= handler.read(mmioAddrs[k & 1023] - 0xfe00_0000, 4);
  return acc;
});
const mmio = run('manager.read(addr, 4) MMIO', (n) => {
  let acc = 0;
  for (let k = 0; k < n; k++) acc ^= mm.read(mmioAddrs[k & 1023] as GuestAddress, 4);
  return acc;
});
const both = run('manager.read(addr, 4) RAM/MMIO alt.', (n) => {
  let acc = 0;
  for (let k = 0; k < n; k++) acc ^= mm.read((k & 1 ? mmioAddrs[k & 1023] : addrs[k & 1023]) as GuestAddress, 4);
  return acc;
});

/** `count` regions: RAM pages with MMIO above every fourth, and one region to toggle. */
function layout(count: number): { manager: MemoryManager; toggle: Region } {
  const m = new MemoryManager();
  const b = MemoryBacking.allocate(count * 0x1000);
  let toggle: Region | undefined;
  for (let i = 0; i < count; i++) {
    const start = GuestAddress(i * 0x1000);
    const r =
      i % 4 === 3
        ? m.addMmio({ name: `io${i}`, start, length: 0x1000, handler })
        : m.addRam({ name: `ram${i}`, start, length: 0x1000, backing: b, backingOffset: i * 0x1000 });
    if (i === count >> 1) toggle = r;
  }
  return { manager: m, toggle: toggle as Region };
}

const change: number[] = [];
for (const count of [10, 100, 1000]) {
  const { manager, toggle } = layout(count);
  change.push(
    run(`change with ${count} regions`, (n) => {
      for (let k = 0; k < n; k++) {
        if (k & 1) manager.map(toggle);
        else manager.unmap(toggle);
      }
      manager.map(toggle);
      return manager.flatView().length;
    }),
  );
}

console.log('\nratios (same run):');
console.log(`RAM dispatch / raw DataView          ${(ram / raw).toFixed(2).padStart(8)}x`);
console.log(`core GuestMemory / raw DataView       ${(core / raw).toFixed(2).padStart(8)}x`);
console.log(`MMIO dispatch / direct handler call  ${(mmio / direct).toFixed(2).padStart(8)}x`);
console.log(`alternating RAM/MMIO / raw DataView  ${(both / raw).toFixed(2).padStart(8)}x`);
console.log(`change: 100 / 10 regions             ${(change[1] / change[0]).toFixed(2).padStart(8)}x`);
console.log(`change: 1000 / 100 regions           ${(change[2] / change[1]).toFixed(2).padStart(8)}x`);
if (sink === 0.5) console.log(sink);
