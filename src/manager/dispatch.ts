import { type GuestAddress, type MemoryRegionAddress, validateIndex } from '../address/address.js';
import { hex } from '../errors.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { MemoryManagerError } from './errors.js';
import type { FlatSpan } from './flat-view.js';
import type { AccessSize, MmioHandler, RomWriteHandler } from './regions.js';

/**
 * What guest accesses to addresses no region shows do: `'ignore'` reads all ones and drops
 * writes (what a bus without a responder does), `'error'` throws `ERR_UNMAPPED_ACCESS`. The same
 * policy decides whether a write to read-only RAM or device memory is dropped or throws
 * `ERR_READ_ONLY`; writes to ROM always go to its write handler, or nowhere.
 */
export type UnmappedPolicy = 'ignore' | 'error';

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

/**
 * The lookup table of one flat view: entries sorted by address, the guest memory regions of its
 * backed spans, and the guest accesses a CPU or emulator issues, dispatched through them.
 * Immutable: the manager builds a new one on every change.
 */
export class AccessTable {
  /** The guest memory regions of the readable backed spans, in address order. */
  readonly regions: readonly GuestMemoryRegion[];
  readonly #entries: readonly Entry[];
  readonly #starts: Float64Array;
  readonly #policy: UnmappedPolicy;
  #last: Entry = NO_ENTRY;

  constructor(spans: readonly FlatSpan[], regionsOf: (span: FlatSpan) => GuestMemoryRegion[], policy: UnmappedPolicy) {
    const entries: Entry[] = [];
    const regions: GuestMemoryRegion[] = [];
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
    this.#entries = entries;
    this.#starts = Float64Array.from(entries, (e) => e.start);
    this.#policy = policy;
    this.regions = regions;
  }

  /**
   * The `size`-byte little-endian value at `addr`, as the guest reads it.
   *
   * @throws {MemoryManagerError} `ERR_UNMAPPED_ACCESS` (policy `'error'`), `ERR_ACCESS_SIZE`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for an address that is not a safe integer.
   */
  read(addr: GuestAddress, size: AccessSize): number {
    if (typeof addr === 'number') {
      let e = this.#last;
      let off = addr - e.start;
      if (!(off >= 0 && off < e.length)) {
        e = this.#lookup(addr);
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
   * Writes the `size`-byte little-endian `value` at `addr`, as the guest writes it.
   *
   * @throws {MemoryManagerError} `ERR_UNMAPPED_ACCESS`, `ERR_READ_ONLY` (policy `'error'`),
   *   `ERR_ACCESS_SIZE`, `ERR_INVALID_ARG` for a value that is not a `size`-byte unsigned integer.
   *   Nothing is written when any of them is thrown.
   */
  write(addr: GuestAddress, size: AccessSize, value: number): void {
    if (typeof addr === 'number') {
      let e = this.#last;
      let off = addr - e.start;
      if (!(off >= 0 && off < e.length)) {
        e = this.#lookup(addr);
        off = addr - e.start;
      }
      if (off >>> 0 === off && off <= e.length - size && fits(value, size)) {
        if (e.writable) return writeRegion(e.mem as GuestMemoryRegion, off, size, value);
        if ((e.sizes & (1 << size)) !== 0) return (e.handler as MmioHandler).write(e.base + off, size, value);
      }
    }
    this.#writeSlow(addr, size, value);
  }

  /** The entry holding `addr` (now the last hit), or the sentinel. */
  #lookup(addr: number): Entry {
    const i = this.#find(addr);
    if (i < 0 || !(addr < this.#entries[i].end)) return NO_ENTRY;
    return (this.#last = this.#entries[i]);
  }

  #readSlow(addr: number, size: AccessSize): number {
    const pieces = this.#resolve(addr, size, false);
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
    const pieces = this.#resolve(addr, size, true);
    for (const p of pieces) {
      const e = p.entry;
      const v = Math.floor(value / 2 ** (8 * p.pos)) % 2 ** (8 * p.n);
      if (e === undefined) continue;
      if (e.mem !== undefined) {
        if (e.writable) {
          if (p.n === size) writeRegion(e.mem, p.off, size, v);
          else writeBytes(e.mem, p.off, p.n, v);
        } else if (e.onWrite !== undefined) {
          writeSplit(p, v, (o, s, x) => (e.onWrite as RomWriteHandler)(e.base + o, s, x));
        }
        continue;
      }
      writeSplit(p, v, (o, s, x) => (e.handler as MmioHandler).write(e.base + o, s, x));
    }
  }

  /**
   * The pieces of the access `[addr, addr + size)`, all checked before any is performed, so that
   * a refused access has no effect at all.
   */
  #resolve(addr: number, size: AccessSize, write: boolean): Piece[] {
    validateIndex(addr, 'address');
    validateSize(size);
    const pieces: Piece[] = [];
    const end = addr + size;
    for (let cur = addr; cur < end; ) {
      const i = this.#find(cur);
      const e = i >= 0 && cur < this.#entries[i].end ? this.#entries[i] : undefined;
      const stop = e !== undefined ? Math.min(end, e.end) : Math.min(end, i + 1 < this.#entries.length ? this.#starts[i + 1] : end);
      const n = stop - cur;
      if (e === undefined) {
        if (this.#policy === 'error') {
          throw new MemoryManagerError('ERR_UNMAPPED_ACCESS', `guest ${write ? 'write to' : 'read of'} ${hex(cur)} (${size} bytes at ${hex(addr)}): no region shows there`, {
            address: cur,
            length: size,
          });
        }
        pieces.push({ entry: undefined, off: 0, pos: cur - addr, n, sizes: [] });
      } else {
        let sizes: readonly AccessSize[] = [];
        const isMmio = e.handler !== undefined || (write && !e.writable && e.onWrite !== undefined);
        if (write && e.mem !== undefined && !e.writable && e.onWrite === undefined && e.span?.kind !== 'rom' && this.#policy === 'error') {
          throw new MemoryManagerError('ERR_READ_ONLY', `guest write to ${hex(cur)} (${size} bytes at ${hex(addr)}): ${e.span?.region.name} is read-only here`, {
            address: cur,
            length: size,
          });
        }
        if (isMmio) {
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
        this.#last = e;
      }
      cur = stop;
    }
    return pieces;
  }

  /** Index of the last entry starting at or below `addr`, or -1. */
  #find(addr: number): number {
    const starts = this.#starts;
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
  // The region's own views, as its accessors use them; a miss (grown or closed memory) takes
  // the accessor, which refreshes them or throws.
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
