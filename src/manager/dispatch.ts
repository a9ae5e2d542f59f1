import { type GuestAddress, type MemoryRegionAddress, validateIndex } from '../address/address.js';
import { AddressError } from '../address/errors.js';
import { hex } from '../errors.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { MemoryManagerError } from './errors.js';
import type { FlatSpan } from './flat-view.js';
import type { AccessSize, MmioHandler, RomWriteHandler } from './regions.js';

/**
 * What guest accesses to addresses no region shows do: `'ignore'` reads all ones and drops
 * writes (what a bus without a responder does), `'error'` throws `ERR_UNMAPPED_ACCESS`. The same
 * policy decides whether a write to read-only RAM or device memory with nothing writable below
 * it is dropped or throws `ERR_READ_ONLY`; writes to ROM always go to its write handler, or
 * nowhere.
 */
export type UnmappedPolicy = 'ignore' | 'error';

/** Throws `ERR_INVALID_ARG` unless `policy` is an {@link UnmappedPolicy}. */
export function validatePolicy(policy: unknown): asserts policy is UnmappedPolicy {
  if (policy !== 'ignore' && policy !== 'error') {
    throw new MemoryManagerError('ERR_INVALID_ARG', `unmapped must be 'ignore' or 'error', got ${String(policy)}`);
  }
}

/** One piece of the flat view as dispatch uses it: a backed region, or an MMIO handler. */
interface Entry {
  readonly start: number;
  readonly end: number;
  readonly length: number;
  readonly span: FlatSpan | undefined;
  /** Backed spans: the guest memory region (one per backing chunk). */
  readonly mem: GuestMemoryRegion | undefined;
  readonly writable: boolean;
  /** MMIO: the handler, the accepted sizes as a bit mask (bit `size`), and the offset at `start`. */
  readonly handler: MmioHandler | undefined;
  readonly sizes: number;
  readonly base: number;
  readonly onWrite: RomWriteHandler | undefined;
}

/** A sentinel that no address hits, so the last-hit test needs no `undefined` check. */
const NO_ENTRY: Entry = {
  start: Number.NaN,
  end: Number.NaN,
  length: 0,
  span: undefined,
  mem: undefined,
  writable: false,
  handler: undefined,
  sizes: 0,
  base: 0,
  onWrite: undefined,
};

const SIZE_MASK = (1 << 1) | (1 << 2) | (1 << 4);

/** One part of a straddling access: an entry (or a hole) and the bytes of the access in it. */
interface Piece {
  readonly entry: Entry | undefined;
  /** Offset in the entry. */
  readonly off: number;
  /** Bytes of the access before this piece. */
  readonly pos: number;
  readonly n: number;
  /** MMIO: the access sizes the piece is given as. */
  readonly sizes: readonly AccessSize[];
}

/** The entries of one flat view, sorted by address, with the last one hit in front. */
class SpanTable {
  readonly entries: readonly Entry[];
  readonly starts: Float64Array;
  last: Entry = NO_ENTRY;

  /** Backed spans become one entry per guest memory region, which are added to `regions`. */
  constructor(spans: readonly FlatSpan[], regionsOf: (span: FlatSpan) => GuestMemoryRegion[], regions: GuestMemoryRegion[]) {
    const entries: Entry[] = [];
    for (const span of spans) {
      const src = span.source;
      if (src.handler !== undefined) {
        let sizes = 0;
        for (const s of src.accessSizes) sizes |= 1 << s;
        entries.push({ ...NO_ENTRY, start: span.start, end: span.end, length: span.end - span.start, span, handler: src.handler, sizes, base: span.offset });
        continue;
      }
      for (const mem of regionsOf(span)) {
        regions.push(mem);
        entries.push({
          ...NO_ENTRY,
          start: mem.start,
          end: mem.end,
          length: mem.length,
          span,
          mem,
          writable: span.access === 'read-write',
          base: span.offset + (mem.start - span.start),
          onWrite: src.onWrite,
        });
      }
    }
    this.entries = entries;
    this.starts = Float64Array.from(entries, (e) => e.start);
  }

  /** The entry holding `addr` (now the last hit), or the sentinel. */
  lookup(addr: number): Entry {
    const i = this.find(addr);
    if (i < 0 || !(addr < this.entries[i].end)) return NO_ENTRY;
    return (this.last = this.entries[i]);
  }

  /** Index of the last entry starting at or below `addr`, or -1. */
  find(addr: number): number {
    const starts = this.starts;
    let lo = 0;
    let hi = starts.length - 1;
    if (hi < 0 || addr < starts[0]) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= addr) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/**
 * Guest accesses as a CPU or emulator issues them, dispatched through two views of one layout:
 * reads through the flat view, writes through the write view (where read-only RAM steps aside).
 * Immutable: the manager builds a new one on every change.
 */
export class AccessTable {
  /** The guest memory regions of the readable backed spans, in address order. */
  readonly regions: readonly GuestMemoryRegion[];
  readonly #reads: SpanTable;
  readonly #writes: SpanTable;
  readonly #policy: UnmappedPolicy;

  constructor(
    readSpans: readonly FlatSpan[],
    writeSpans: readonly FlatSpan[],
    regionsOf: (span: FlatSpan) => GuestMemoryRegion[],
    policy: UnmappedPolicy,
  ) {
    const regions: GuestMemoryRegion[] = [];
    this.#reads = new SpanTable(readSpans, regionsOf, regions);
    this.#writes = new SpanTable(writeSpans, regionsOf, []);
    this.#policy = policy;
    this.regions = regions;
  }

  /**
   * The `size`-byte little-endian value at `addr`, as the guest reads it.
   *
   * @throws {MemoryManagerError} `ERR_UNMAPPED_ACCESS` (policy `'error'`), `ERR_ACCESS_SIZE`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for an address that is not a safe integer, or an
   *   access whose last byte lies beyond 2^53 - 1.
   */
  read(addr: GuestAddress, size: AccessSize): number {
    if (typeof addr === 'number') {
      const t = this.#reads;
      let e = t.last;
      let off = addr - e.start;
      if (!(off >= 0 && off < e.length)) {
        e = t.lookup(addr);
        off = addr - e.start;
      }
      // `off >>> 0 === off`: a non-negative integer below 2^32 (larger MMIO offsets take the slow path).
      if (off >>> 0 === off && off <= e.length - size && (size === 4 || size === 2 || size === 1)) {
        if (e.mem !== undefined) return readRegion(e.mem, off, size);
        if ((e.sizes & (1 << size)) !== 0) return mask((e.handler as MmioHandler).read(e.base + off, size), size);
      }
    }
    return this.#readSlow(addr, size);
  }

  /**
   * Writes the `size`-byte little-endian `value` at `addr`, as the guest writes it: to writable
   * RAM or device memory, to an MMIO handler, to a ROM's write handler (or nowhere), or by the
   * policy where nothing takes writes.
   *
   * @throws {MemoryManagerError} `ERR_READ_ONLY` (read-only RAM with nothing below it) and
   *   `ERR_UNMAPPED_ACCESS` under policy `'error'`, `ERR_ACCESS_SIZE`, `ERR_INVALID_ARG` for a
   *   value that is not a `size`-byte unsigned integer. Nothing is written when any is thrown.
   * @throws {AddressError} `ERR_INVALID_ADDRESS`, as for reads.
   */
  write(addr: GuestAddress, size: AccessSize, value: number): void {
    if (typeof addr === 'number') {
      const t = this.#writes;
      let e = t.last;
      let off = addr - e.start;
      if (!(off >= 0 && off < e.length)) {
        e = t.lookup(addr);
        off = addr - e.start;
      }
      if (off >>> 0 === off && off <= e.length - size && fits(value, size)) {
        if (e.writable) return writeRegion(e.mem as GuestMemoryRegion, off, size, value);
        if ((e.sizes & (1 << size)) !== 0) return (e.handler as MmioHandler).write(e.base + off, size, value);
      }
    }
    this.#writeSlow(addr, size, value);
  }

  #readSlow(addr: number, size: AccessSize): number {
    const pieces = this.#resolve(this.#reads, addr, size, false);
    let value = 0;
    for (const p of pieces) {
      const e = p.entry;
      let v: number;
      if (e === undefined) v = 2 ** (8 * p.n) - 1;
      else if (e.mem !== undefined) v = p.n === size ? readRegion(e.mem, p.off, size) : readBytes(e.mem, p.off, p.n);
      else v = readMmio(e, p);
      value += v * 2 ** (8 * p.pos);
    }
    return value;
  }

  #writeSlow(addr: number, size: AccessSize, value: number): void {
    if (!fits(value, size)) {
      validateSize(size);
      throw new MemoryManagerError('ERR_INVALID_ARG', `a ${size}-byte write needs an unsigned integer below 2^${8 * size}, got ${value}`, {
        address: addr,
        length: size,
      });
    }
    const pieces = this.#resolve(this.#writes, addr, size, true);
    for (const p of pieces) {
      const e = p.entry;
      const v = Math.floor(value / 2 ** (8 * p.pos)) % 2 ** (8 * p.n);
      if (e === undefined) continue;
      if (e.writable) {
        if (p.n === size) writeRegion(e.mem as GuestMemoryRegion, p.off, size, v);
        else writeBytes(e.mem as GuestMemoryRegion, p.off, p.n, v);
      } else if (e.handler !== undefined) {
        writeSplit(p, v, (o, s, x) => (e.handler as MmioHandler).write(e.base + o, s, x));
      } else if (e.onWrite !== undefined) {
        writeSplit(p, v, (o, s, x) => (e.onWrite as RomWriteHandler)(e.base + o, s, x));
      }
    }
  }

  /**
   * The pieces of the access `[addr, addr + size)` in `table`, all checked before any is
   * performed, so that a refused access has no effect at all.
   */
  #resolve(table: SpanTable, addr: number, size: AccessSize, write: boolean): Piece[] {
    validateIndex(addr, 'address');
    validateSize(size);
    // Compared, not summed: past 2^53 the sum rounds back into the safe range.
    if (addr > Number.MAX_SAFE_INTEGER - (size - 1)) {
      throw new AddressError('ERR_INVALID_ADDRESS', `a ${size}-byte access at ${hex(addr)} ends beyond 2^53 - 1`, { address: addr, length: size });
    }
    const pieces: Piece[] = [];
    const end = addr + size;
    for (let cur = addr; cur < end; ) {
      const i = table.find(cur);
      const e = i >= 0 && cur < table.entries[i].end ? table.entries[i] : undefined;
      const next = i + 1 < table.entries.length ? table.starts[i + 1] : end;
      const stop = Math.min(end, e !== undefined ? e.end : next);
      const n = stop - cur;
      if (e === undefined) {
        if (this.#policy === 'error') throw this.#nothingAt(cur, addr, size, write);
        pieces.push({ entry: undefined, off: 0, pos: cur - addr, n, sizes: [] });
      } else {
        let sizes: readonly AccessSize[] = [];
        // MMIO, and ROM write handlers, are given the sizes they take.
        if (e.handler !== undefined || (write && !e.writable)) {
          const split = splitSizes(e.handler === undefined ? SIZE_MASK : e.sizes, n);
          if (split === undefined) {
            throw new MemoryManagerError('ERR_ACCESS_SIZE', `guest access of ${n} bytes at ${hex(cur)}: ${e.span?.region.name} takes ${e.span?.source.accessSizes.join(', ')}-byte accesses`, {
              address: cur,
              length: n,
            });
          }
          sizes = split;
        }
        pieces.push({ entry: e, off: cur - e.start, pos: cur - addr, n, sizes });
        table.last = e;
      }
      cur = stop;
    }
    return pieces;
  }

  /** The error for an access to `cur`, where nothing takes it. */
  #nothingAt(cur: number, addr: number, size: number, write: boolean): MemoryManagerError {
    const shown = write ? this.#reads.lookup(cur) : NO_ENTRY;
    if (shown.mem !== undefined) {
      return new MemoryManagerError('ERR_READ_ONLY', `guest write to ${hex(cur)} (${size} bytes at ${hex(addr)}): ${shown.span?.region.name} is read-only and nothing below it takes writes`, {
        address: cur,
        length: size,
      });
    }
    return new MemoryManagerError('ERR_UNMAPPED_ACCESS', `guest ${write ? 'write to' : 'read of'} ${hex(cur)} (${size} bytes at ${hex(addr)}): no region shows there`, {
      address: cur,
      length: size,
    });
  }
}

function validateSize(size: number): asserts size is AccessSize {
  if (size !== 1 && size !== 2 && size !== 4) {
    throw new MemoryManagerError('ERR_ACCESS_SIZE', `a guest access is 1, 2 or 4 bytes, not ${size}`, { length: Number.isSafeInteger(size) ? size : undefined });
  }
}

function fits(value: number, size: number): boolean {
  return size === 4 ? value >>> 0 === value : size === 2 ? (value & 0xffff) === value : size === 1 && (value & 0xff) === value;
}

function mask(value: number, size: AccessSize): number {
  return size === 4 ? value >>> 0 : value & (size === 2 ? 0xffff : 0xff);
}

/** Splits `n` bytes into accepted sizes, largest first; `undefined` when they cannot be. */
function splitSizes(accepted: number, n: number): AccessSize[] | undefined {
  const out: AccessSize[] = [];
  for (let left = n; left > 0; ) {
    const s = ([4, 2, 1] as const).find((s) => s <= left && (accepted & (1 << s)) !== 0);
    if (s === undefined) return undefined;
    out.push(s);
    left -= s;
  }
  return out;
}

function readMmio(e: Entry, p: Piece): number {
  let v = 0;
  let o = 0;
  for (const s of p.sizes) {
    v += mask((e.handler as MmioHandler).read(e.base + p.off + o, s), s) * 2 ** (8 * o);
    o += s;
  }
  return v;
}

function writeSplit(p: Piece, value: number, write: (off: number, size: AccessSize, value: number) => void): void {
  let o = 0;
  for (const s of p.sizes) {
    write(p.off + o, s, Math.floor(value / 2 ** (8 * o)) % 2 ** (8 * s));
    o += s;
  }
}

function readRegion(mem: GuestMemoryRegion, off: number, size: AccessSize): number {
  // The region's own views, as its accessors use them (host order: guestmem assumes a
  // little-endian host); a miss (grown or closed memory) takes the accessor, which refreshes
  // the views or throws.
  const v = mem.v;
  const abs = mem.base + off;
  if (abs + size <= v.u8.length) {
    if (size === 4) return (abs & 3) === 0 ? v.u32[abs >>> 2] : v.dv.getUint32(abs, true);
    if (size === 2) return (abs & 1) === 0 ? v.u16[abs >>> 1] : v.dv.getUint16(abs, true);
    return v.u8[abs];
  }
  const a = off as MemoryRegionAddress;
  return size === 4 ? mem.readU32LE(a) : size === 2 ? mem.readU16LE(a) : mem.readU8(a);
}

function writeRegion(mem: GuestMemoryRegion, off: number, size: AccessSize, value: number): void {
  const a = off as MemoryRegionAddress;
  if (size === 4) mem.writeU32LE(a, value);
  else if (size === 2) mem.writeU16LE(a, value);
  else mem.writeU8(a, value);
}

function readBytes(mem: GuestMemoryRegion, off: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) v += mem.readU8((off + i) as MemoryRegionAddress) * 2 ** (8 * i);
  return v;
}

function writeBytes(mem: GuestMemoryRegion, off: number, n: number, value: number): void {
  for (let i = 0; i < n; i++) mem.writeU8((off + i) as MemoryRegionAddress, Math.floor(value / 2 ** (8 * i)) % 256);
}
