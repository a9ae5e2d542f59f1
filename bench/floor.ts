/**
 * What a guestmem value access costs over the bare typed-array access it ends in, in one
 * process: hot (1024 addresses) and cold (2^20 random addresses) reads over one 64 MiB region,
 * against a `BigUint64Array` and a `DataView` over the same buffer. CPU time, medians.
 *
 *   node build/bench/floor.js
 */
import { GuestAddress, GuestMemory, GuestMemoryRegion, heapBackend } from 'guestmem';

const MEM = 64 << 20;
const backend = heapBackend(MEM);
backend.views().u8.fill(0x5a, backend.byteOffset, backend.byteOffset + MEM);
const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), backend)]);
const u64 = new BigUint64Array(backend.views().buffer, backend.byteOffset, MEM / 8);
const dv = new DataView(backend.views().buffer, backend.byteOffset, MEM);

function xorshiftTable(len: number): Uint32Array {
  const t = new Uint32Array(len);
  let x = 42;
  for (let k = 0; k < len; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    t[k] = x & (MEM - 8);
  }
  return t;
}
const HOT = xorshiftTable(1024);
const COLD = xorshiftTable(1 << 20);
// Safe integers at the hot addresses, for readU64LEAsNumber.
for (const a of HOT) mem.writeU64LE(a as GuestAddress, 0x000f_edcb_a987_6543);

type Loop = (t: Uint32Array, n: number) => number | bigint;
const loops: Record<string, [Loop, Uint32Array]> = {
  'hot u64 BigUint64Array': [(t, n) => { let acc = 0n; for (let k = 0; k < n; k++) acc ^= u64[t[k & 1023] >>> 3]; return acc; }, HOT],
  'hot u64 DataView.getBigUint64': [(t, n) => { let acc = 0n; for (let k = 0; k < n; k++) acc ^= dv.getBigUint64(t[k & 1023], true); return acc; }, HOT],
  'hot u64 readU64LE': [(t, n) => { let acc = 0n; for (let k = 0; k < n; k++) acc ^= mem.readU64LE(t[k & 1023] as GuestAddress); return acc; }, HOT],
  'hot u64 readU64LEAsNumber': [(t, n) => { let acc = 0; for (let k = 0; k < n; k++) acc += mem.readU64LEAsNumber(t[k & 1023] as GuestAddress); return acc; }, HOT],
  'hot u32 DataView': [(t, n) => { let acc = 0; for (let k = 0; k < n; k++) acc ^= dv.getUint32(t[k & 1023], true); return acc; }, HOT],
  'hot u32 readU32LE': [(t, n) => { let acc = 0; for (let k = 0; k < n; k++) acc ^= mem.readU32LE(t[k & 1023] as GuestAddress); return acc; }, HOT],
  'cold u32 DataView': [(t, n) => { let acc = 0; for (let k = 0; k < n; k++) acc ^= dv.getUint32(t[k & 1048575], true); return acc; }, COLD],
  'cold u32 readU32LE': [(t, n) => { let acc = 0; for (let k = 0; k < n; k++) acc ^= mem.readU32LE(t[k & 1048575] as GuestAddress); return acc; }, COLD],
  'cold u64 BigUint64Array': [(t, n) => { let acc = 0n; for (let k = 0; k < n; k++) acc ^= u64[t[k & 1048575] >>> 3]; return acc; }, COLD],
  'cold u64 readU64LE': [(t, n) => { let acc = 0n; for (let k = 0; k < n; k++) acc ^= mem.readU64LE(t[k & 1048575] as GuestAddress); return acc; }, COLD],
};

const cpuNs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};
const N = 1e6;
const ROUNDS = 15;
let sink = 0;
const absorb = (v: number | bigint): void => void (sink ^= Number(BigInt.asUintN(8, BigInt(v))));
for (let w = 0; w < 3; w++) for (const [f, t] of Object.values(loops)) absorb(f(t, N));
const samples: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, [f, t]] of Object.entries(loops)) {
    const c = cpuNs();
    absorb(f(t, N));
    (samples[name] ??= []).push((cpuNs() - c) / N);
  }
}
for (const [name, s] of Object.entries(samples)) {
  s.sort((a, b) => a - b);
  console.log(`${name.padEnd(30)} ${s[s.length >> 1].toFixed(2).padStart(7)} ns (median of ${ROUNDS})`);
}
console.log(`sink ${sink}`);
