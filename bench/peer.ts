/**
 * guestmem's column of the peer benchmark: every operation of ../shared/peer-bench/OPERATIONS.md
 * done through guestmem's public API, printing RESULT / TABLE / INFO lines in its format (§6).
 *
 *   node build/bench/peer.js heap   # implementation `guestmem`: heap ArrayBuffer per region
 *   node build/bench/peer.js mmap   # implementation `guestmem-mmap`: guestmem/mmap per region
 *   node build/bench/peer.js raw    # implementation `raw`: the Node raw rows, for `npm run bench`
 *
 * Layouts (L1/L8/L64/L2adj), prefault (every byte 0x5A), xorshift32 tables (checked by their
 * first/XOR values), host buffers (mutually page-aligned with guest memory, §1.3) and timing
 * protocol (§3; knobs PB_REPS, PB_MIN_MS, PB_WARM_MS, PB_FILTER) are those of the peer harnesses.
 * Each loop is a function of its own, as in node/bench.mjs, so V8's feedback stays per operation.
 */
import { readFileSync } from 'node:fs';
import { AtomicBitmap, GuestAddress, GuestMemory, GuestMemoryRegion, heapBackend, type MemoryBackend } from 'guestmem';
import { MmapBackend } from 'guestmem/mmap';

const KIB = 1024;
const MIB = 1024 * KIB;
const MEM_SIZE = 256 * MIB;
const HOLE = 4096;
const TABLE_LEN = 1 << 20;
const HOT_LEN = 1 << 10;
const VAL32 = 0x89abcdef;
const VAL64 = 0x0123456789abcdefn;
const SAFE64 = 0x000f_edcb_a987_6543;
const FILL = 0x5a;

const mode = process.argv[2] ?? 'heap';
if (mode !== 'heap' && mode !== 'mmap' && mode !== 'raw') {
  console.error(`usage: peer.js heap|mmap|raw (got ${mode})`);
  process.exit(2);
}
const IMPL = mode === 'heap' ? 'guestmem' : mode === 'mmap' ? 'guestmem-mmap' : 'raw';

const envNum = (k: string, d: number): number => {
  const v = process.env[k];
  return v !== undefined && v !== '' && !Number.isNaN(Number(v)) ? Number(v) : d;
};
const REPS = envNum('PB_REPS', 5);
const MIN_NS = envNum('PB_MIN_MS', 200) * 1e6;
const WARM_NS = envNum('PB_WARM_MS', 600) * 1e6;
const FILTER = process.env.PB_FILTER ?? '';
const CURSOR_WRAP = 2 ** 30;
const nowNs = (): number => Number(process.hrtime.bigint());
const wants = (id: string): boolean => !FILTER || FILTER.split(',').some((p) => id.includes(p));
const out = (line: string): void => void process.stdout.write(`${line}\n`);

function nonvoluntaryCsw(): number {
  try {
    const m = /nonvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync('/proc/thread-self/status', 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function anonHugeKb(): string {
  try {
    return /AnonHugePages:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? '?';
  } catch {
    return '?';
  }
}

type Op = (start: number, n: number) => number | bigint;
let sinkNum = 0;
let sinkBig = 0n;
function absorb(v: number | bigint): void {
  if (typeof v === 'bigint') sinkBig ^= v;
  else sinkNum ^= v;
}

/** The timing protocol of OPERATIONS.md §3, as node/bench.mjs implements it. */
function run(id: string, bytesPerOp: number, f: Op): void {
  if (!wants(id)) return;
  let cursor = 0;
  const t0 = nowNs();
  let iters = 1;
  let dt: number;
  for (;;) {
    const t = nowNs();
    absorb(f(cursor, iters));
    dt = nowNs() - t;
    cursor = (cursor + iters) % CURSOR_WRAP;
    if (dt >= 20e6) break;
    iters *= 2;
  }
  iters = Math.ceil((iters * 1.2 * MIN_NS) / dt);
  do {
    absorb(f(cursor, iters));
    cursor = (cursor + iters) % CURSOR_WRAP;
  } while (nowNs() - t0 < WARM_NS);
  let samples: number[];
  let preempt: number;
  for (let attempt = 0; ; attempt++) {
    const csw0 = nonvoluntaryCsw();
    samples = [];
    let shortest = Infinity;
    for (let r = 0; r < REPS; r++) {
      const t = nowNs();
      absorb(f(cursor, iters));
      const d = nowNs() - t;
      cursor = (cursor + iters) % CURSOR_WRAP;
      shortest = Math.min(shortest, d);
      samples.push(d / iters);
    }
    preempt = nonvoluntaryCsw() - csw0;
    if (shortest >= MIN_NS || attempt >= 2) break;
    iters = Math.ceil((iters * 1.2 * MIN_NS) / shortest);
  }
  out(`RESULT\t${IMPL}\t${id}\t${bytesPerOp}\t${iters}\t${samples.map((s) => s.toFixed(4)).join(',')}\t${preempt}`);
  const med = [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)];
  process.stderr.write(`  ${id.padEnd(34)} ${(bytesPerOp ? bytesPerOp / med : med).toFixed(2).padStart(9)} ${bytesPerOp ? 'GB/s' : 'ns/op'}\n`);
}

// ---------------------------------------------------------------- tables (§1.4)

const flat = new Uint32Array(TABLE_LEN);
{
  let x = 42;
  for (let k = 0; k < TABLE_LEN; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    flat[k] = x & (MEM_SIZE - 8);
  }
}

function guestTable(regions: number): Uint32Array {
  if (regions === 1) return flat;
  const size = MEM_SIZE / regions;
  return flat.map((o) => o + Math.floor(o / size) * HOLE);
}

function tableLine(name: string, t: Uint32Array): void {
  let xor = 0;
  for (let k = 0; k < t.length; k++) xor = (xor ^ t[k]) >>> 0;
  out(`TABLE\t${IMPL}\t${name}\tfirst=${t[0]},${t[1]},${t[2]},${t[3]}\txor=${xor}`);
}

// ---------------------------------------------------------------- memory (§1.2, §1.3)

/** Backends made for the current layout, closed (mmap) when it is done. */
let open: MmapBackend[] = [];
function backend(size: number): MemoryBackend {
  if (mode !== 'mmap') return heapBackend(size);
  const b = MmapBackend.anonymous(size);
  open.push(b);
  return b;
}
function closeAll(): void {
  for (const b of open) b.close();
  open = [];
}

/** Backends for `n` regions of `MEM_SIZE / n` bytes, prefaulted with FILL. */
function layout(n: number): MemoryBackend[] {
  const size = MEM_SIZE / n;
  const backends = Array.from({ length: n }, () => backend(size));
  for (const b of backends) b.views().u8.fill(FILL, b.byteOffset, b.byteOffset + size);
  return backends;
}

function memoryOver(backends: MemoryBackend[], n: number, hole: number, tracked: boolean): GuestMemory {
  const size = MEM_SIZE / n;
  return GuestMemory.fromRegions(
    backends.map((b, i) => new GuestMemoryRegion(GuestAddress(i * (size + hole)), b, tracked ? { bitmap: new AtomicBitmap(size) } : {})),
  );
}

/**
 * Host buffers, separate from guest memory, at multiples of 4096 inside one buffer whose base
 * sits at the same offset within a page as guest memory's (§1.3). Heap guest memory and a
 * 40 MiB heap ArrayBuffer both come from a fresh glibc mmap (base = page + 16), as in
 * node/bench.mjs; mmap guest memory is page-aligned, so its host buffers live in a page-aligned
 * anonymous mapping too.
 */
const hostMapping = mode === 'mmap' ? MmapBackend.anonymous(40 * MIB) : undefined;
const hostAb: ArrayBufferLike = hostMapping ? hostMapping.views().buffer : new ArrayBuffer(40 * MIB);
let hostNext = 0;
function hostBuf(b: number, rel: number): Uint8Array {
  const off = hostNext + rel;
  hostNext += Math.ceil((b + rel + 1) / 4096) * 4096 + 4096;
  return new Uint8Array(hostAb, off, b);
}
function pattern(b: number, rel = 0): Uint8Array {
  const a = hostBuf(b, rel);
  for (let i = 0; i < b; i++) a[i] = (i * 7 + 1) & 0xff;
  return a;
}

// ---------------------------------------------------------------- guestmem loops

function gmWriteSliceSeq(mem: GuestMemory, src: Uint8Array, start: number, n: number): number {
  const b = src.length;
  const mask = MEM_SIZE / b - 1;
  for (let k = start; k < start + n; k++) mem.writeSlice(GuestAddress((k & mask) * b), src);
  return 0;
}
function gmReadSliceSeq(mem: GuestMemory, dst: Uint8Array, start: number, n: number): number {
  const b = dst.length;
  const mask = MEM_SIZE / b - 1;
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    mem.readSlice(GuestAddress((k & mask) * b), dst);
    acc ^= dst[k & (b - 1)];
  }
  return acc;
}
function gmWriteSliceFixed(mem: GuestMemory, src: Uint8Array, addr: number, _start: number, n: number): number {
  for (let k = 0; k < n; k++) mem.writeSlice(addr as GuestAddress, src);
  return 0;
}
function gmReadSliceFixed(mem: GuestMemory, dst: Uint8Array, addr: number, start: number, n: number): number {
  const b = dst.length;
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    mem.readSlice(addr as GuestAddress, dst);
    acc ^= dst[k & (b - 1)];
  }
  return acc;
}
// Guest addresses come from the uint32 tables; the `as` is a compile-time brand, not a call.
function gmReadU32(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  let acc = 0;
  for (let k = start; k < start + n; k++) acc ^= mem.readU32LE(t[k & mask] as GuestAddress);
  return acc;
}
function gmWriteU32(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) mem.writeU32LE(t[k & mask] as GuestAddress, VAL32);
  return 0;
}
function gmReadU64(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): bigint {
  let acc = 0n;
  for (let k = start; k < start + n; k++) acc ^= mem.readU64LE(t[k & mask] as GuestAddress);
  return acc;
}
function gmWriteU64(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) mem.writeU64LE(t[k & mask] as GuestAddress, VAL64);
  return 0;
}
function gmReadU64Num(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  let acc = 0;
  for (let k = start; k < start + n; k++) acc += mem.readU64LEAsNumber(t[k & mask] as GuestAddress);
  return acc % 2 ** 32;
}
// A separate copy of the u64 write loop for the tracked memory: feedback of its own.
function gmWriteU64Tracked(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) mem.writeU64LE(t[k & mask] as GuestAddress, VAL64);
  return 0;
}
function gmReadU64Split(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    const a = t[k & mask];
    acc ^= mem.readU32LE(a as GuestAddress) ^ mem.readU32LE((a + 4) as GuestAddress);
  }
  return acc;
}
function gmWriteU64Split(mem: GuestMemory, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) {
    const a = t[k & mask];
    mem.writeU32LE(a as GuestAddress, 0x89abcdef);
    mem.writeU32LE((a + 4) as GuestAddress, 0x01234567);
  }
  return 0;
}

// ---------------------------------------------------------------- raw loops (node/bench.mjs)

function rawWriteSliceSeq(u8: Uint8Array, src: Uint8Array, start: number, n: number): number {
  const b = src.length;
  const mask = MEM_SIZE / b - 1;
  for (let k = start; k < start + n; k++) u8.set(src, (k & mask) * b);
  return 0;
}
function rawReadSliceSeq(u8: Uint8Array, dst: Uint8Array, start: number, n: number): number {
  const b = dst.length;
  const mask = MEM_SIZE / b - 1;
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    const off = (k & mask) * b;
    dst.set(u8.subarray(off, off + b));
    acc ^= dst[k & (b - 1)];
  }
  return acc;
}
function rawWriteSliceFixed(u8: Uint8Array, src: Uint8Array, addr: number, _start: number, n: number): number {
  for (let k = 0; k < n; k++) u8.set(src, addr);
  return 0;
}
function rawReadSliceFixed(u8: Uint8Array, dst: Uint8Array, addr: number, start: number, n: number): number {
  const b = dst.length;
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    dst.set(u8.subarray(addr, addr + b));
    acc ^= dst[k & (b - 1)];
  }
  return acc;
}
function rawWriteSliceSplit(u8: Uint8Array, src: Uint8Array, addr: number, boundary: number, _start: number, n: number): number {
  const first = boundary - addr;
  for (let k = 0; k < n; k++) {
    u8.set(src.subarray(0, first), addr);
    u8.set(src.subarray(first), boundary);
  }
  return 0;
}
function rawReadSliceSplit(u8: Uint8Array, dst: Uint8Array, addr: number, boundary: number, start: number, n: number): number {
  const b = dst.length;
  const first = boundary - addr;
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    dst.set(u8.subarray(addr, boundary), 0);
    dst.set(u8.subarray(boundary, addr + b), first);
    acc ^= dst[k & (b - 1)];
  }
  return acc;
}
function rawReadU32(dv: DataView, t: Uint32Array, mask: number, start: number, n: number): number {
  let acc = 0;
  for (let k = start; k < start + n; k++) acc ^= dv.getUint32(t[k & mask], true);
  return acc;
}
function rawWriteU32(dv: DataView, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) dv.setUint32(t[k & mask], VAL32, true);
  return 0;
}
function rawReadU64(dv: DataView, t: Uint32Array, mask: number, start: number, n: number): bigint {
  let acc = 0n;
  for (let k = start; k < start + n; k++) acc ^= dv.getBigUint64(t[k & mask], true);
  return acc;
}
function rawWriteU64(dv: DataView, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) dv.setBigUint64(t[k & mask], VAL64, true);
  return 0;
}
function rawReadU64Split(dv: DataView, t: Uint32Array, mask: number, start: number, n: number): number {
  let acc = 0;
  for (let k = start; k < start + n; k++) {
    const a = t[k & mask];
    acc ^= dv.getUint32(a, true) ^ dv.getUint32(a + 4, true);
  }
  return acc;
}
function rawWriteU64Split(dv: DataView, t: Uint32Array, mask: number, start: number, n: number): number {
  for (let k = start; k < start + n; k++) {
    const a = t[k & mask];
    dv.setUint32(a, 0x89abcdef, true);
    dv.setUint32(a + 4, 0x01234567, true);
  }
  return 0;
}

// ---------------------------------------------------------------- run

out(`INFO\t${IMPL}\tversion\tguestmem on Node ${process.version} (V8 ${process.versions.v8}), ${mode} memory`);
tableLine('flat', flat);
const SIZES: [number, string][] = [
  [4 * KIB, '4k'],
  [64 * KIB, '64k'],
  [MIB, '1m'],
];
const MASKS: [number, string][] = [
  [TABLE_LEN - 1, ''],
  [HOT_LEN - 1, '.hot'],
];
/** The ids of a group of operations, to skip building its layout when the filter wants none. */
const ids = (...parts: string[][]): string[] =>
  parts.reduce<string[]>((acc, p) => acc.flatMap((a) => p.map((x) => a + x)), ['']);
const wantsAny = (list: string[]): boolean => list.some(wants);

if (mode === 'raw') {
  const ab = new ArrayBuffer(MEM_SIZE);
  const u8 = new Uint8Array(ab).fill(FILL);
  const dv = new DataView(ab);
  out(`INFO\t${IMPL}\tAnonHugePages_kB_after_prefault\t${anonHugeKb()}`);
  for (const [b, name] of SIZES) {
    const src = pattern(b);
    run(`slice.write.${name}`, b, (s, n) => rawWriteSliceSeq(u8, src, s, n));
  }
  for (const [b, name] of SIZES) {
    const dst = hostBuf(b, 0);
    run(`slice.read.${name}`, b, (s, n) => rawReadSliceSeq(u8, dst, s, n));
  }
  for (const [mask, sfx] of MASKS) {
    run(`obj.read.u32.r1${sfx}`, 0, (s, n) => rawReadU32(dv, flat, mask, s, n));
    run(`obj.write.u32.r1${sfx}`, 0, (s, n) => rawWriteU32(dv, flat, mask, s, n));
    run(`obj.read.u64.r1${sfx}`, 0, (s, n) => rawReadU64(dv, flat, mask, s, n));
    run(`obj.write.u64.r1${sfx}`, 0, (s, n) => rawWriteU64(dv, flat, mask, s, n));
    run(`obj.read.u64split.r1${sfx}`, 0, (s, n) => rawReadU64Split(dv, flat, mask, s, n));
    run(`obj.write.u64split.r1${sfx}`, 0, (s, n) => rawWriteU64Split(dv, flat, mask, s, n));
  }
  const b = 64 * KIB;
  const [src, dst, srcMis, dstMis] = [pattern(b), hostBuf(b, 0), pattern(b, 4096 - 16), hostBuf(b, 16)];
  const boundary = MEM_SIZE / 2;
  const cross = boundary - b / 2;
  const inside = MEM_SIZE / 4;
  run('slice.write.64k.cross', b, (s, n) => rawWriteSliceSplit(u8, src, cross, boundary, s, n));
  run('slice.write.64k.fixed', b, (s, n) => rawWriteSliceFixed(u8, src, inside, s, n));
  run('slice.read.64k.cross', b, (s, n) => rawReadSliceSplit(u8, dst, cross, boundary, s, n));
  run('slice.read.64k.fixed', b, (s, n) => rawReadSliceFixed(u8, dst, inside, s, n));
  run('slice.write.64k.fixed.host-16', b, (s, n) => rawWriteSliceFixed(u8, srcMis, inside, s, n));
  run('slice.read.64k.fixed.host+16', b, (s, n) => rawReadSliceFixed(u8, dstMis, inside, s, n));
} else {
  // ---- 1. sequential slices, L1
  if (wantsAny(ids(['slice.'], ['write.', 'read.'], ['4k', '64k', '1m']))) {
    const mem = memoryOver(layout(1), 1, 0, false);
    out(`INFO\t${IMPL}\tAnonHugePages_kB_after_prefault\t${anonHugeKb()}`);
    for (const [b, name] of SIZES) {
      const src = pattern(b);
      run(`slice.write.${name}`, b, (s, n) => gmWriteSliceSeq(mem, src, s, n));
    }
    for (const [b, name] of SIZES) {
      const dst = hostBuf(b, 0);
      run(`slice.read.${name}`, b, (s, n) => gmReadSliceSeq(mem, dst, s, n));
    }
    closeAll();
  }

  // ---- 2. + 3. random objects at 1 / 8 / 64 regions, untracked and tracked
  for (const r of [1, 8, 64]) {
    const t = guestTable(r);
    tableLine(`r${r}`, t);
    const all = ids(['obj.'], ['read.', 'write.'], ['u32', 'u64', 'u64split', 'u64num'], [`.r${r}`], ['', '.hot'], ['', '.bitmap']);
    if (!wantsAny(all)) continue;
    const hole = r === 1 ? 0 : HOLE;
    const backends = layout(r);
    const mem = memoryOver(backends, r, hole, false);
    for (const [mask, sfx] of MASKS) {
      run(`obj.read.u32.r${r}${sfx}`, 0, (s, n) => gmReadU32(mem, t, mask, s, n));
      run(`obj.write.u32.r${r}${sfx}`, 0, (s, n) => gmWriteU32(mem, t, mask, s, n));
      run(`obj.read.u64.r${r}${sfx}`, 0, (s, n) => gmReadU64(mem, t, mask, s, n));
      run(`obj.write.u64.r${r}${sfx}`, 0, (s, n) => gmWriteU64(mem, t, mask, s, n));
      // guestmem only: a u64 read as a checked number (no BigInt), over values that are safe
      // integers (the fill and VAL64 are not): written at every table address first, untimed.
      if (wants(`obj.read.u64num.r${r}${sfx}`)) {
        for (let k = 0; k <= mask; k++) mem.writeU64LE(t[k] as GuestAddress, SAFE64);
        run(`obj.read.u64num.r${r}${sfx}`, 0, (s, n) => gmReadU64Num(mem, t, mask, s, n));
      }
      if (r === 1) {
        run(`obj.read.u64split.r1${sfx}`, 0, (s, n) => gmReadU64Split(mem, t, mask, s, n));
        run(`obj.write.u64split.r1${sfx}`, 0, (s, n) => gmWriteU64Split(mem, t, mask, s, n));
      }
    }
    // The same memory (already prefaulted) seen through regions with an AtomicBitmap each.
    const tracked = memoryOver(backends, r, hole, true);
    for (const [mask, sfx] of MASKS) {
      run(`obj.write.u64.r${r}${sfx}.bitmap`, 0, (s, n) => gmWriteU64Tracked(tracked, t, mask, s, n));
    }
    const first = tracked.findRegion(t[0] as GuestAddress) as GuestMemoryRegion;
    if (wants(`obj.write.u64.r${r}.bitmap`) && !first.bitmap.dirtyAt(t[0] - first.start)) throw new Error('the bitmap recorded no write');
    closeAll();
  }

  // ---- 4. + 5. 64 KiB at a fixed address, L2adj
  if (wantsAny(ids(['slice.'], ['write', 'read'], ['.64k.'], ['cross', 'fixed', 'fixed.host-16', 'fixed.host+16']))) {
    const half = MEM_SIZE / 2;
    const mem = memoryOver(layout(2), 2, 0, false);
    const b = 64 * KIB;
    const [src, dst, srcMis, dstMis] = [pattern(b), hostBuf(b, 0), pattern(b, 4096 - 16), hostBuf(b, 16)];
    const cross = half - b / 2;
    const inside = MEM_SIZE / 4;
    run('slice.write.64k.cross', b, (s, n) => gmWriteSliceFixed(mem, src, cross, s, n));
    run('slice.write.64k.fixed', b, (s, n) => gmWriteSliceFixed(mem, src, inside, s, n));
    run('slice.read.64k.cross', b, (s, n) => gmReadSliceFixed(mem, dst, cross, s, n));
    run('slice.read.64k.fixed', b, (s, n) => gmReadSliceFixed(mem, dst, inside, s, n));
    run('slice.write.64k.fixed.host-16', b, (s, n) => gmWriteSliceFixed(mem, srcMis, inside, s, n));
    run('slice.read.64k.fixed.host+16', b, (s, n) => gmReadSliceFixed(mem, dstMis, inside, s, n));
    // sanity: the straddling write landed in both regions
    const check = new Uint8Array(b);
    mem.writeSlice(GuestAddress(cross), src);
    mem.readSlice(GuestAddress(cross), check);
    if (!check.every((v, i) => v === src[i])) throw new Error('the straddling write did not land');
    closeAll();
  }
}
hostMapping?.close();
out(`INFO\t${IMPL}\tsink\t${sinkNum ^ Number(sinkBig & 0xffn)}`);
