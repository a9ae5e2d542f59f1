/**
 * The two sides of the torn-copy test: a writer flips small copies, a struct that straddles two
 * adjacent regions and slice-to-slice copies between all-0x00 and all-0xff; a reader copies them
 * out and counts every naturally aligned piece that came back with bytes of both (a tear: 0x00ff).
 */
import { GuestAddress } from '../address/address.js';
import { structLayout } from '../bytes/struct.js';
import { u16le, u32le, u64le } from '../bytes/values.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VolatileSlice } from '../volatile/slice.js';

const G = GuestAddress;

/** Where the memory's two adjacent regions meet. */
const BOUNDARY = 0x1000;
/** The layout the test builds: two adjacent shared regions. */
export const FLIP_RANGES: [GuestAddress, number][] = [
  [G(0), BOUNDARY],
  [G(BOUNDARY), 0x1000],
];

/** `[address, length]` of the small copies (`readSlice`/`writeSlice`) inside the first region. */
const COPIES: [number, number][] = [
  [0x102, 2],
  [0x104, 4],
  [0x108, 8],
  [0x112, 6], // a u16 then a u32
];
/** `[address, length]` of the slice-to-slice copies (`VolatileSlice.copyTo`). */
const SLICE_COPIES: [number, number][] = [
  [0x182, 2],
  [0x184, 4],
  [0x188, 8],
];
/** Two sources for the slice copies: 8 bytes of 0x00 and 8 of 0xff, never written by the flips. */
const SOURCES = [0x800, 0x808];

/** Fields naturally aligned in guest memory, `c` the first one past the boundary. */
const Straddling = structLayout('straddling', { a: u16le, b: u16le, c: u32le, d: u16le, e: u16le, f: u64le });
const STRUCT_AT = BOUNDARY - 4;
const STRUCT_VALUES = [
  { a: 0, b: 0, c: 0, d: 0, e: 0, f: 0n },
  { a: 0xffff, b: 0xffff, c: 0xffff_ffff, d: 0xffff, e: 0xffff, f: 0xffff_ffff_ffff_ffffn },
];
const FILLS = [new Uint8Array(8), new Uint8Array(8).fill(0xff)];

/** Sets the two slice-copy sources; done once, before the writer starts. */
export function prepareFlip(mem: GuestMemory): void {
  mem.writeSlice(G(SOURCES[0]), FILLS[0]);
  mem.writeSlice(G(SOURCES[1]), FILLS[1]);
}

/** The writer: flips everything `rounds` times, phase after phase. */
export function flip(mem: GuestMemory, rounds: number): void {
  const sources = SOURCES.map((a) => mem.getSlice(G(a), 8));
  const targets = SLICE_COPIES.map(([a, n]) => mem.getSlice(G(a), n));
  for (let r = 0; r < rounds; r++) {
    const phase = r & 1;
    for (const [addr, n] of COPIES) mem.writeSlice(G(addr), FILLS[phase].subarray(0, n));
    mem.writeStruct(Straddling, G(STRUCT_AT), STRUCT_VALUES[phase]);
    for (const t of targets) sources[phase].copyTo(t);
  }
}

/** Counts of one kind of copy. */
export interface TearCount {
  /** Aligned pieces checked. */
  pieces: number;
  /** Pieces with bytes of both values. */
  torn: number;
  /** Pieces whose value differed from the last read of the same piece: the writer was running. */
  changes: number;
}

/** What the reader saw. */
export interface TearReport {
  /** `readSlice` of the small copies inside one region. */
  inRegion: TearCount;
  /** `readStruct` of the struct straddling the two regions, field by field. */
  straddling: TearCount;
  /** `copyTo` from the flipped slices into a private one. */
  sliceCopy: TearCount;
}

/**
 * The reader: reads everything again and again for `ms` milliseconds, and on (up to `maxMs`)
 * until it has seen every kind change `minChanges` times: on a busy machine the writer may
 * have run beside it only now and then.
 */
export function readFlips(mem: GuestMemory, ms: number, maxMs: number, minChanges: number): TearReport {
  const inRegion: TearCount = { pieces: 0, torn: 0, changes: 0 };
  const straddling: TearCount = { pieces: 0, torn: 0, changes: 0 };
  const sliceCopy: TearCount = { pieces: 0, torn: 0, changes: 0 };
  const copies = COPIES.map(([addr, n]) => ({ addr: G(addr), buf: new Uint8Array(n), pieces: alignedPieces(addr, n) }));
  const sliceCopies = SLICE_COPIES.map(([addr, n]) => {
    const bytes = new Uint8Array(n);
    return { from: mem.getSlice(G(addr), n), to: new VolatileSlice(bytes), bytes };
  });
  const fields = Straddling.fields.map((f) => ({ name: f.name, ones: f.type.size === 8 ? 0xffff_ffff_ffff_ffffn : 256 ** f.type.size - 1 }));
  // The last value seen of each piece (0 or 1, -1 before the first): a change shows the writer ran.
  const last = new Int8Array(64).fill(-1);
  const record = (count: TearCount, key: number, seen: number): void => {
    count.pieces++;
    if (seen < 0) count.torn++;
    else {
      if (last[key] >= 0 && last[key] !== seen) count.changes++;
      last[key] = seen;
    }
  };
  const start = Date.now();
  const enough = (): boolean =>
    Date.now() - start >= maxMs ||
    (Date.now() - start >= ms && Math.min(inRegion.changes, straddling.changes, sliceCopy.changes) >= minChanges);
  while (!enough()) {
    for (let k = 0; k < 1000; k++) {
      let key = 0;
      for (const c of copies) {
        mem.readSlice(c.addr, c.buf);
        for (const [at, size] of c.pieces) record(inRegion, key++, classifyBytes(c.buf, at - c.addr, size));
      }
      const s = mem.readStruct(Straddling, G(STRUCT_AT)) as Record<string, number | bigint>;
      for (const f of fields) {
        const x = s[f.name];
        record(straddling, key++, x === 0 || x === 0n ? 0 : x === f.ones ? 1 : -1);
      }
      for (const c of sliceCopies) {
        c.from.copyTo(c.to);
        record(sliceCopy, key++, classifyBytes(c.bytes, 0, c.bytes.length));
      }
    }
  }
  return { inRegion, straddling, sliceCopy };
}

/** 0 when `bytes[from, from + n)` are all 0x00, 1 when all 0xff, -1 when torn. */
function classifyBytes(bytes: Uint8Array, from: number, n: number): number {
  const b = bytes[from];
  if (b !== 0 && b !== 0xff) return -1;
  for (let i = 1; i < n; i++) if (bytes[from + i] !== b) return -1;
  return b === 0 ? 0 : 1;
}

/** The naturally aligned pieces, `[address, size]`, of `n` bytes at `addr` (largest first). */
function alignedPieces(addr: number, n: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = addr; a < addr + n; ) {
    let size = 8;
    while (a % size !== 0 || a + size > addr + n) size /= 2;
    out.push([a, size]);
    a += size;
  }
  return out;
}
