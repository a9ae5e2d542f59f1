/**
 * A/B of two guestmem builds in one process, for a machine too busy for two separate runs to be
 * comparable: the same operations as bench:peer (64 MiB instead of 256, same xorshift tables),
 * batches of A and B interleaved, CPU time (`process.cpuUsage`), medians of AB_ROUNDS (15).
 *
 *   node build/bench/ab.js <old>/dist/index.js <new>/dist/index.js [id substrings, comma-separated]
 *
 * Each build gets its own copy of the loops (`loops` below is instantiated per build from
 * source), so V8's feedback stays per build. Run it both ways round: the first build of a pair
 * has a small advantage on some rows.
 */
import { pathToFileURL } from 'node:url';
import type * as Guestmem from 'guestmem';

type Lib = typeof Guestmem;
type Mem = Guestmem.GuestMemory;
type Backend = Guestmem.MemoryBackend;

const VAL64 = 0x0123456789abcdefn;
const MEM = 64 << 20;
const HOLE = 4096;
const TABLE_LEN = 1 << 20;
const ROUNDS = Number(process.env.AB_ROUNDS ?? 15);

/** The loops, written once and compiled once per build (a fresh function object each time). */
const LOOPS_SOURCE = `
  const VAL64 = ${VAL64}n;
  return {
    rU32(mem, t, mask, n) { let acc = 0; for (let k = 0; k < n; k++) acc ^= mem.readU32LE(t[k & mask]); return acc; },
    wU32(mem, t, mask, n) { for (let k = 0; k < n; k++) mem.writeU32LE(t[k & mask], 0x89abcdef); return 0; },
    rU64(mem, t, mask, n) { let acc = 0n; for (let k = 0; k < n; k++) acc ^= mem.readU64LE(t[k & mask]); return Number(acc & 1n); },
    wU64(mem, t, mask, n) { for (let k = 0; k < n; k++) mem.writeU64LE(t[k & mask], VAL64); return 0; },
    wU64T(mem, t, mask, n) { for (let k = 0; k < n; k++) mem.writeU64LE(t[k & mask], VAL64); return 0; },
    rSlice(mem, dst, addr, n) { let acc = 0; for (let k = 0; k < n; k++) { mem.readSlice(addr, dst); acc ^= dst[k & 1023]; } return acc; },
    wSlice(mem, src, addr, n) { for (let k = 0; k < n; k++) mem.writeSlice(addr, src); return 0; },
    rSliceSeq(mem, dst, size, n) {
      const b = dst.length; const mask = size / b - 1; let acc = 0;
      for (let k = 0; k < n; k++) { mem.readSlice((k & mask) * b, dst); acc ^= dst[k & (b - 1)]; }
      return acc;
    },
  };`;
type Table = Uint32Array;
interface Loops {
  rU32(mem: Mem, t: Table, mask: number, n: number): number;
  wU32(mem: Mem, t: Table, mask: number, n: number): number;
  rU64(mem: Mem, t: Table, mask: number, n: number): number;
  wU64(mem: Mem, t: Table, mask: number, n: number): number;
  wU64T(mem: Mem, t: Table, mask: number, n: number): number;
  rSlice(mem: Mem, buf: Uint8Array, addr: number, n: number): number;
  wSlice(mem: Mem, buf: Uint8Array, addr: number, n: number): number;
  rSliceSeq(mem: Mem, buf: Uint8Array, size: number, n: number): number;
}

interface Build {
  lib: Lib;
  loops: Loops;
}

async function load(path: string): Promise<Build> {
  const lib = (await import(pathToFileURL(path).href)) as Lib;
  // One compilation per build: the two builds' loops share no feedback.
  return { lib, loops: new Function(LOOPS_SOURCE)() as Loops };
}

const [pathA, pathB, filter = ''] = process.argv.slice(2);
if (pathA === undefined || pathB === undefined) {
  console.error('usage: ab.js <A>/dist/index.js <B>/dist/index.js [filter]');
  process.exit(2);
}
const A = await load(pathA);
const B = await load(pathB);

const flat = new Uint32Array(TABLE_LEN);
{
  let x = 42;
  for (let k = 0; k < TABLE_LEN; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    flat[k] = x & (MEM - 8);
  }
}
const table = (r: number): Table => (r === 1 ? flat : flat.map((o) => o + Math.floor(o / (MEM / r)) * HOLE));
const cpuNs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};
let sink = 0;

/** Interleaved batches of `fa` and `fb`; prints medians (ns/op, or GB/s with `bytes`) and B/A. */
function ab(id: string, fa: (n: number) => number, fb: (n: number) => number, bytes = 0): void {
  if (filter && !filter.split(',').some((p) => id.includes(p))) return;
  let n = 1000;
  for (;;) {
    const t = cpuNs();
    sink ^= fa(n) ^ fb(n);
    if (cpuNs() - t > 30e6) break;
    n *= 2;
  }
  const sa: number[] = [];
  const sb: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let t = cpuNs();
    sink ^= fa(n);
    sa.push((cpuNs() - t) / n);
    t = cpuNs();
    sink ^= fb(n);
    sb.push((cpuNs() - t) / n);
  }
  const med = (s: number[]): number => [...s].sort((x, y) => x - y)[s.length >> 1];
  const [ma, mb] = [med(sa), med(sb)];
  const f = (v: number): string => (bytes ? `${(bytes / v).toFixed(1)} GB/s` : `${v.toFixed(2)} ns`);
  console.log(`${id.padEnd(26)} A ${f(ma).padStart(11)}  B ${f(mb).padStart(11)}  B/A time ${(mb / ma).toFixed(3)}`);
}

function backends(lib: Lib, r: number): Backend[] {
  return Array.from({ length: r }, () => {
    const b = lib.heapBackend(MEM / r);
    b.views().u8.fill(0x5a, b.byteOffset, b.byteOffset + MEM / r);
    return b;
  });
}
function memory(lib: Lib, bs: readonly Backend[], r: number, hole: number, tracked: boolean): Mem {
  const size = MEM / r;
  return lib.GuestMemory.fromRegions(
    bs.map((b, i) => new lib.GuestMemoryRegion(lib.GuestAddress(i * (size + hole)), b, tracked ? { bitmap: new lib.AtomicBitmap(size) } : {})),
  );
}

for (const r of [1, 8, 64]) {
  const t = table(r);
  const hole = r === 1 ? 0 : HOLE;
  const [ba, bb] = [backends(A.lib, r), backends(B.lib, r)];
  const [ma, mb] = [memory(A.lib, ba, r, hole, false), memory(B.lib, bb, r, hole, false)];
  for (const [mask, sfx] of [[1023, '.hot'], [TABLE_LEN - 1, '']] as const) {
    ab(`read.u32.r${r}${sfx}`, (n) => A.loops.rU32(ma, t, mask, n), (n) => B.loops.rU32(mb, t, mask, n));
    ab(`write.u32.r${r}${sfx}`, (n) => A.loops.wU32(ma, t, mask, n), (n) => B.loops.wU32(mb, t, mask, n));
    ab(`read.u64.r${r}${sfx}`, (n) => A.loops.rU64(ma, t, mask, n), (n) => B.loops.rU64(mb, t, mask, n));
    ab(`write.u64.r${r}${sfx}`, (n) => A.loops.wU64(ma, t, mask, n), (n) => B.loops.wU64(mb, t, mask, n));
  }
  const [ta, tb] = [memory(A.lib, ba, r, hole, true), memory(B.lib, bb, r, hole, true)];
  for (const [mask, sfx] of [[1023, '.hot'], [TABLE_LEN - 1, '']] as const) {
    ab(`write.u64.r${r}${sfx}.bitmap`, (n) => A.loops.wU64T(ta, t, mask, n), (n) => B.loops.wU64T(tb, t, mask, n));
  }
}
{
  const [ma, mb] = [memory(A.lib, backends(A.lib, 2), 2, 0, false), memory(B.lib, backends(B.lib, 2), 2, 0, false)];
  const b = 64 << 10;
  // Page-aligned host buffers (guest memory and these both come from fresh mappings).
  const buf = new Uint8Array(new ArrayBuffer(8 << 20), 3 * 4096, b);
  const small = new Uint8Array(new ArrayBuffer(8 << 20), 3 * 4096, 4096);
  const [cross, inside] = [MEM / 2 - b / 2, MEM / 4];
  ab('slice.read.64k.cross', (n) => A.loops.rSlice(ma, buf, cross, n), (n) => B.loops.rSlice(mb, buf, cross, n), b);
  ab('slice.read.64k.fixed', (n) => A.loops.rSlice(ma, buf, inside, n), (n) => B.loops.rSlice(mb, buf, inside, n), b);
  ab('slice.write.64k.cross', (n) => A.loops.wSlice(ma, buf, cross, n), (n) => B.loops.wSlice(mb, buf, cross, n), b);
  ab('slice.write.64k.fixed', (n) => A.loops.wSlice(ma, buf, inside, n), (n) => B.loops.wSlice(mb, buf, inside, n), b);
  ab('slice.read.4k', (n) => A.loops.rSliceSeq(ma, small, MEM / 2, n), (n) => B.loops.rSliceSeq(mb, small, MEM / 2, n), 4096);
}
console.log(`sink ${sink}`);
