// Temporary: the cost of marking on the hot path (a u64 write inside one page whose bit is
// already set). Run: npx tsc -p tsconfig.json && node dist/bitmap/measure-marking.js
import { AtomicBitmap } from './atomic-bitmap.js';
import { NO_BITMAP, type Bitmap } from './bitmap.js';

const MEM = 1 << 20; // 256 pages
const N = 20_000_000;
const OFFSETS = new Int32Array(4096);
for (let i = 0; i < OFFSETS.length; i++) OFFSETS[i] = ((Math.random() * (MEM / 8)) | 0) * 8;

const mem = new Uint32Array(new SharedArrayBuffer(MEM));
const plain = new AtomicBitmap(MEM);
const shared = new AtomicBitmap(MEM, { shared: true });
plain.markDirty(0, MEM);
shared.markDirty(0, MEM);
const slice: Bitmap = plain.sliceAt(0);
const wordsP = new Int32Array(MEM >> 15).fill(-1);
const wordsS = new Int32Array(new SharedArrayBuffer(MEM >> 15)).fill(-1);

function untracked(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    s += off;
  }
  return s;
}
function bitmapPlain(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    plain.markDirty(off, 8);
    s += off;
  }
  return s;
}
function bitmapSlice(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    slice.markDirty(off, 8);
    s += off;
  }
  return s;
}
function bitmapShared(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    shared.markDirty(off, 8);
    s += off;
  }
  return s;
}
function inlinePlainOr(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    const p = off >>> 12;
    wordsP[p >>> 5] |= 1 << (p & 31);
    s += off;
  }
  return s;
}
function inlineAtomicsOr(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    const p = off >>> 12;
    Atomics.or(wordsS, p >>> 5, 1 << (p & 31));
    s += off;
  }
  return s;
}
function inlineCheckThenAtomicsOr(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    const p = off >>> 12;
    const m = 1 << (p & 31);
    if ((wordsS[p >>> 5] & m) === 0) Atomics.or(wordsS, p >>> 5, m);
    s += off;
  }
  return s;
}
function inlineAtomicsLoadThenOr(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    mem[off >>> 2] = i;
    mem[(off >>> 2) + 1] = i;
    const p = off >>> 12;
    const m = 1 << (p & 31);
    if ((Atomics.load(wordsS, p >>> 5) & m) === 0) Atomics.or(wordsS, p >>> 5, m);
    s += off;
  }
  return s;
}

// A region-like u64 write: bounds check, two little-endian u32 stores, then the mark. One class
// per bitmap kind, so that every call site stays monomorphic as in a real region.
const dv = new DataView(mem.buffer);
function regionClass() {
  return class {
    constructor(readonly bitmap: Bitmap) {}
    writeU64(off: number, lo: number, hi: number): void {
      if (!(off >= 0 && off + 8 <= MEM && Number.isInteger(off))) throw new RangeError('out of bounds');
      dv.setUint32(off, lo, true);
      dv.setUint32(off + 4, hi, true);
      this.bitmap.markDirty(off, 8);
    }
  };
}
const rNone = new (regionClass())(NO_BITMAP);
const rPlain = new (regionClass())(plain);
const rSlice = new (regionClass())(slice);
const rShared = new (regionClass())(shared);
function regionNone(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    rNone.writeU64(off, i, i);
    s += off;
  }
  return s;
}
function regionPlain(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    rPlain.writeU64(off, i, i);
    s += off;
  }
  return s;
}
function regionSlice(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    rSlice.writeU64(off, i, i);
    s += off;
  }
  return s;
}
function regionShared(): number {
  let s = 0;
  for (let i = 0; i < N; i++) {
    const off = OFFSETS[i & 4095];
    rShared.writeU64(off, i, i);
    s += off;
  }
  return s;
}

const cases: [string, () => number][] = [
  ['untracked u64 write (2x u32 store)', untracked],
  ['+ AtomicBitmap.markDirty, not shared', bitmapPlain],
  ['+ slice.markDirty, not shared', bitmapSlice],
  ['+ AtomicBitmap.markDirty, shared', bitmapShared],
  ['+ inline plain |=', inlinePlainOr],
  ['+ inline Atomics.or', inlineAtomicsOr],
  ['+ inline check, then Atomics.or (unsafe)', inlineCheckThenAtomicsOr],
  ['+ inline Atomics.load, then or (unsafe)', inlineAtomicsLoadThenOr],
  ['region-like u64 write, NO_BITMAP', regionNone],
  ['region-like u64 write + AtomicBitmap', regionPlain],
  ['region-like u64 write + slice', regionSlice],
  ['region-like u64 write + shared AtomicBitmap', regionShared],
];
const rounds = Number(process.argv[2] ?? 3);
const only = process.argv[3];
if (only !== undefined) cases.splice(0, cases.length, ...cases.filter(([name]) => name.includes(only) || name.endsWith('NO_BITMAP') || name.startsWith('untracked')));
const best = new Map<string, number>();
for (let r = 0; r < rounds; r++) {
  for (const [name, f] of cases) {
    for (let rep = 0; rep < 3; rep++) {
      const t0 = process.hrtime.bigint();
      f();
      const ns = Number(process.hrtime.bigint() - t0) / N;
      if (r > 0 || rep > 0) best.set(name, Math.min(best.get(name) ?? Infinity, ns));
    }
  }
}
for (const [name] of cases) {
  const ns = best.get(name)!;
  const base = best.get(name.startsWith('region') ? 'region-like u64 write, NO_BITMAP' : cases[0][0])!;
  console.log(`${name.padEnd(44)} ${ns.toFixed(2)} ns/op  ${(ns / base).toFixed(2)}x`);
}
