import { GuestAddress, type MemoryRegionAddress, validateIndex } from '../address/address.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { BackingViews } from '../backend/views.js';
import { AtomicBitmap, atomicBitmapTarget, type DirtyLog, type DirtyRange } from '../bitmap/atomic-bitmap.js';
import { type Bitmap, NO_BITMAP, type PageMarks } from '../bitmap/bitmap.js';
import { ByteAccess, type Span } from '../bytes/access.js';
import { hex } from '../errors.js';
import { GuestMemoryRegion } from '../region/region.js';
import type { VolatileSlice } from '../volatile/slice.js';
import { GuestMemoryError } from './errors.js';

/**
 * The lookup directory splits `[0, end of memory)` into equal power-of-two chunks, about four
 * per region and at most 4096 (16 KiB of Int32), never smaller than a page; one entry per chunk
 * names the first region that ends past the chunk's start.
 */
const DIRECTORY_ENTRIES_PER_REGION = 4;
const MAX_DIRECTORY_ENTRIES = 4096;
const MIN_CHUNK_SHIFT = 12;

/** Options of {@link GuestMemory.fromRanges}. */
export interface FromRangesOptions {
  /** Back each range with a SharedArrayBuffer (Atomics, workers) instead of a heap ArrayBuffer. */
  shared?: boolean;
}

/** Where a guest address lives: its region and the offset in it. */
export interface RegionAddress {
  /** The region holding the guest address. */
  readonly region: GuestMemoryRegion;
  /** The offset of the guest address in the region. */
  readonly address: MemoryRegionAddress;
}

/** A run of dirty guest memory: page-aligned, except where a region ends mid-page. */
export interface GuestDirtyRange {
  /** Guest address of the first dirty byte. */
  readonly start: GuestAddress;
  /** Bytes in the run. */
  readonly length: number;
}

/**
 * The scratch copy of a value that straddles two adjacent regions: read into it, or written into
 * it and then copied back, so that the typed accessors need no second code path.
 */
class ScratchSpan implements Span {
  v: BackingViews;
  // NaN bounds: the last-hit test in `_at` never matches a scratch span.
  readonly start = Number.NaN;
  readonly end = Number.NaN;
  readonly length = 0;
  readonly base = 0;
  readonly bitmap: Bitmap = NO_BITMAP;
  readonly scratch = true;
  readonly readOnly = false;
  readonly _marks: PageMarks | null = null;
  readonly _markBase = 0;
  readonly _writeLength = -1;
  bytes: Uint8Array;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.v = new BackingViews(this.bytes.buffer, false);
  }
}

/**
 * A guest physical address space: an immutable, sorted set of non-overlapping regions, read and
 * written at {@link GuestAddress}es (it is {@link Bytes}). Accesses may span adjacent regions;
 * a hole ends a partial transfer and fails an exact one with `ERR_GUEST_ADDRESS_INVALID` naming the
 * first address that is not memory.
 *
 * Lookup keeps the last region hit in front of a binary search, so runs of accesses to one region
 * cost a few comparisons. Hot-plug ({@link GuestMemory.insertRegion},
 * {@link GuestMemory.removeRegion}) returns new values; {@link GuestMemoryAtomic} hands a
 * consistent one to readers while a writer swaps.
 *
 * @example
 * const mem = GuestMemory.fromRanges([[GuestAddress(0), 0x10000], [GuestAddress(0x10000), 0x10000]]);
 * mem.writeU64LE(GuestAddress(0xfffc), 0x1122334455667788n); // straddles the two regions
 * mem.readU32LE(GuestAddress(0x10000)); // => 0x11223344
 */
export class GuestMemory extends ByteAccess<GuestAddress> {
  readonly #regions: readonly GuestMemoryRegion[];
  /**
   * The same regions in a plain array for the lookups: V8 (11.x) loads elements of a frozen
   * array through a generic inline-cache call, ~200 instructions per access.
   */
  readonly #table: GuestMemoryRegion[];
  readonly #starts: Float64Array;
  readonly #ends: Float64Array;
  // Doubles from the start (NaN until set): a field defined `undefined` would stay generic.
  /** The exclusive end of the highest region. */
  readonly #end: number = Number.NaN;
  /** `1 / chunk size` (a power of two, so `addr * #perChunk` is exact). */
  readonly #perChunk: number = Number.NaN;
  /** Per chunk, the first region whose end lies past the chunk's start; one more entry: n - 1. */
  readonly #directory: Int32Array;
  /**
   * The hot path's directory: per chunk, that region itself, and the one after it (or it again),
   * which holds the chunk's other addresses when a region boundary falls inside the chunk. One
   * dependent load fewer than `#directory` then `#table`.
   */
  readonly #chunkFirst: GuestMemoryRegion[];
  readonly #chunkSecond: GuestMemoryRegion[];
  /** @internal The span of the last access: the last region hit (the lookup cache), or scratch. */
  declare _span: GuestMemoryRegion | ScratchSpan;
  #scratch: ScratchSpan | undefined;
  #splitAddr = 0;

  private constructor(sorted: GuestMemoryRegion[]) {
    super();
    this.#table = sorted;
    this.#regions = Object.freeze([...sorted]);
    this.#starts = Float64Array.from(sorted, (r) => r.start);
    this.#ends = Float64Array.from(sorted, (r) => r.end);
    this.#end = this.#ends[sorted.length - 1];
    const entries = Math.min(MAX_DIRECTORY_ENTRIES, DIRECTORY_ENTRIES_PER_REGION * sorted.length);
    let shift = MIN_CHUNK_SHIFT;
    while (this.#end / 2 ** shift > entries) shift++;
    const chunk = 2 ** shift;
    this.#perChunk = 1 / chunk;
    const chunks = Math.ceil(this.#end / chunk);
    const dir = new Int32Array(chunks + 1);
    const ends = this.#ends;
    for (let c = 0, i = 0; c < chunks; c++) {
      while (ends[i] <= c * chunk) i++;
      dir[c] = i;
    }
    dir[chunks] = sorted.length - 1;
    this.#directory = dir;
    this.#chunkFirst = Array.from(dir.subarray(0, chunks), (i) => sorted[i]);
    this.#chunkSecond = Array.from(dir.subarray(0, chunks), (i) => sorted[Math.min(i + 1, sorted.length - 1)]);
    this._span = sorted[0];
  }

  /**
   * Builds guest memory from regions in any order.
   *
   * @throws {GuestMemoryError} `ERR_NO_REGIONS`, or `ERR_REGION_OVERLAP` naming both regions.
   */
  static fromRegions(regions: Iterable<GuestMemoryRegion>): GuestMemory {
    const sorted = [...regions];
    if (sorted.length === 0) throw new GuestMemoryError('ERR_NO_REGIONS', 'guest memory needs at least one region');
    for (const r of sorted) {
      if (!(r instanceof GuestMemoryRegion)) {
        throw new GuestMemoryError('ERR_INVALID_ARG', `fromRegions takes GuestMemoryRegion objects, got ${typeof r}`);
      }
    }
    sorted.sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const [a, b] = [sorted[i - 1], sorted[i]];
      if (b.start < a.end) {
        throw new GuestMemoryError('ERR_REGION_OVERLAP', `region ${a.range} overlaps region ${b.range}`, {
          address: b.start,
          length: Math.min(a.end, b.end) - b.start,
        });
      }
    }
    return new GuestMemory(sorted);
  }

  /**
   * Builds guest memory with fresh zeroed memory for each `[start, length]` range.
   *
   * @throws {GuestMemoryError} as {@link GuestMemory.fromRegions}; {@link RegionError} for a bad range.
   */
  static fromRanges(ranges: Iterable<readonly [GuestAddress, number]>, options: FromRangesOptions = {}): GuestMemory {
    const regions: GuestMemoryRegion[] = [];
    for (const [start, length] of ranges) {
      validateIndex(start, 'start');
      validateIndex(length, 'length');
      regions.push(new GuestMemoryRegion(start, options.shared ? sharedBackend(length) : heapBackend(length)));
    }
    return GuestMemory.fromRegions(regions);
  }

  /** The regions, sorted by guest address. */
  regions(): readonly GuestMemoryRegion[] {
    return this.#regions;
  }

  /** How many regions there are. */
  get numRegions(): number {
    return this.#regions.length;
  }

  /** The highest guest address backed by memory. */
  lastAddress(): GuestAddress {
    return (this.#ends[this.#ends.length - 1] - 1) as GuestAddress;
  }

  /** Total bytes of memory over all regions. */
  get totalSize(): number {
    return this.#regions.reduce((n, r) => n + r.length, 0);
  }

  /** The region holding `addr`, if any. */
  findRegion(addr: GuestAddress): GuestMemoryRegion | undefined {
    const i = this.#indexOf(validateIndex(addr, 'address'));
    return i < 0 ? undefined : this.#table[i];
  }

  /** The region holding `addr` and the offset within it, if any. */
  toRegionAddress(addr: GuestAddress): RegionAddress | undefined {
    const region = this.findRegion(addr);
    return region && { region, address: (addr - region.start) as MemoryRegionAddress };
  }

  /** True when a region backs `addr`. */
  addressInRange(addr: GuestAddress): boolean {
    return this.findRegion(addr) !== undefined;
  }

  /**
   * Throws unless a region backs `addr`.
   *
   * @throws {GuestMemoryError} `ERR_GUEST_ADDRESS_INVALID`
   */
  checkAddress(addr: GuestAddress): void {
    this._checkStart(addr);
  }

  /**
   * Throws unless every byte of `[addr, addr + length)` is memory (possibly in several adjacent
   * regions).
   *
   * @throws {GuestMemoryError} `ERR_GUEST_ADDRESS_INVALID` naming the first address that is not.
   */
  checkRange(addr: GuestAddress, length: number): void {
    this._checkRange(addr, length);
  }

  /** True when every byte of `[addr, addr + length)` is memory. */
  rangeInMemory(addr: GuestAddress, length: number): boolean {
    validateIndex(addr, 'address');
    validateIndex(length, 'length');
    // No throw and catch: a device checks guest-supplied ranges with this, many per request.
    return this.#firstHole(addr, addr + length) < 0;
  }

  /**
   * The `count` bytes at `addr` as one slice; they must lie in one region. As in vm-memory, `addr`
   * must be memory even when `count` is 0.
   *
   * @throws {GuestMemoryError} `ERR_GUEST_ADDRESS_INVALID`, or `ERR_REGION_CROSSING` when the
   * range continues into another region (use {@link GuestMemory.getSlices}).
   */
  getSlice(addr: GuestAddress, count: number): VolatileSlice {
    this._checkRange(addr, count);
    const r = this.findRegion(addr);
    if (r === undefined) throw invalidAddress(addr, count); // only when count is 0: the range was checked
    const off = addr - r.start;
    if (off + count > r.length) {
      throw new GuestMemoryError(
        'ERR_REGION_CROSSING',
        `${hex(count)} bytes at ${hex(addr)} cross the end of region ${r.range}`,
        { address: addr, length: count },
      );
    }
    return r.getSlice(off as MemoryRegionAddress, count);
  }

  /**
   * The slices covering `[addr, addr + count)`, one per region, in address order. The whole range
   * is checked before the first slice is yielded.
   *
   * @throws {GuestMemoryError} `ERR_GUEST_ADDRESS_INVALID` naming the first address of a hole.
   */
  *getSlices(addr: GuestAddress, count: number): Generator<VolatileSlice, void, undefined> {
    this._checkRange(addr, count);
    for (let done = 0; done < count; ) {
      const r = this.findRegion((addr + done) as GuestAddress) as GuestMemoryRegion;
      const off = addr + done - r.start;
      const n = Math.min(count - done, r.length - off);
      yield r.getSlice(off as MemoryRegionAddress, n);
      done += n;
    }
  }

  /**
   * A new guest memory with `region` added.
   *
   * @throws {GuestMemoryError} `ERR_REGION_OVERLAP`
   */
  insertRegion(region: GuestMemoryRegion): GuestMemory {
    return GuestMemory.fromRegions([...this.#regions, region]);
  }

  /**
   * A new guest memory without the region that starts at `start` and is `length` bytes long,
   * and the removed region.
   *
   * @throws {GuestMemoryError} `ERR_REGION_NOT_FOUND`, or `ERR_NO_REGIONS` when it was the last.
   */
  removeRegion(start: GuestAddress, length: number): [GuestMemory, GuestMemoryRegion] {
    validateIndex(start, 'start');
    validateIndex(length, 'length');
    const i = this.#regions.findIndex((r) => r.start === start && r.length === length);
    if (i < 0) {
      throw new GuestMemoryError('ERR_REGION_NOT_FOUND', `no region [${hex(start)}, ${hex(start + length)}) to remove`, {
        address: start,
        length,
      });
    }
    const rest = this.#regions.filter((_, j) => j !== i);
    return [GuestMemory.fromRegions(rest), this.#regions[i]];
  }

  // ---- dirty pages -----------------------------------------------------------------------------

  /**
   * Takes the dirty pages of every tracked region and clears them ({@link AtomicBitmap.harvest},
   * atomic per word: a page marked meanwhile is in the result or stays dirty). The result is in
   * guest-address order, with runs that continue into an adjacent region joined. Untracked
   * regions contribute nothing.
   *
   * Regions may mark slices of one bitmap, as the regions of a `MemoryManager` mark their
   * backing's: the bitmap's pages are then taken once, and a page that shows at several guest
   * addresses (RAM and an alias of it) is reported once, at the lowest guest address where it
   * shows. Only the pages that some region shows are taken; the others stay dirty.
   *
   * @throws {GuestMemoryError} `ERR_NOT_TRACKED` when a region's bitmap is not an
   * {@link AtomicBitmap} or a slice of one (checked before any bit is taken).
   */
  harvestDirty(): GuestDirtyRange[] {
    return this.#takeDirty(true);
  }

  /**
   * The dirty guest ranges without clearing them, as {@link GuestMemory.harvestDirty} reports
   * them. The read is live: pages marked meanwhile may or may not show.
   *
   * @throws {GuestMemoryError} `ERR_NOT_TRACKED`, as {@link GuestMemory.harvestDirty}.
   */
  dirtyRanges(): GuestDirtyRange[] {
    return this.#takeDirty(false);
  }

  /**
   * Clears the dirty pages that {@link GuestMemory.harvestDirty} would take.
   *
   * @throws {GuestMemoryError} `ERR_NOT_TRACKED`, as {@link GuestMemory.harvestDirty}.
   */
  resetDirty(): void {
    for (const [root, pieces] of this.#tracking()) takeShown(root, pieces, true);
  }

  /**
   * Marks the pages of `ranges` dirty again: a consumer of {@link GuestMemory.harvestDirty} that
   * failed (a snapshot, a migration) puts back what it took, so that the next harvest still
   * reports those pages. Every range is checked before any page is marked.
   *
   * @throws {GuestMemoryError} `ERR_GUEST_ADDRESS_INVALID` when a range leaves memory.
   */
  markDirty(ranges: readonly GuestDirtyRange[]): void {
    for (const { start, length } of ranges) this._checkRange(GuestAddress(start), length);
    for (const { start, length } of ranges) {
      for (let done = 0; done < length; ) {
        const r = this.findRegion(GuestAddress(start + done)) as GuestMemoryRegion;
        const at = start + done - r.start;
        const n = Math.min(length - done, r.length - at);
        r.bitmap.markDirty(at, n);
        done += n;
      }
    }
  }

  /**
   * ORs an external dirty log (KVM_GET_DIRTY_LOG layout, one bit per page of the region's
   * bitmap) into the bitmap of the region that starts at `start`: a hypervisor reports its log
   * per memory slot, and a slot is a region. The log must cover every page of the region.
   *
   * @throws {GuestMemoryError} `ERR_REGION_NOT_FOUND` when no region starts at `start`,
   * `ERR_NOT_TRACKED` when that region's bitmap is not an {@link AtomicBitmap} or a slice of one
   * that starts on a page boundary.
   * @throws {BitmapError} as {@link AtomicBitmap.merge} (`ERR_BITMAP_LOG_TOO_SHORT` for a log
   * shorter than the region's pages); nothing is merged then.
   */
  mergeDirtyLog(start: GuestAddress, log: DirtyLog): void {
    validateIndex(start, 'start');
    const r = this.#regions.find((x) => x.start === start);
    if (r === undefined) {
      throw new GuestMemoryError('ERR_REGION_NOT_FOUND', `no region starts at ${hex(start)} to merge a dirty log into`, {
        address: start,
      });
    }
    const target = atomicBitmapTarget(r.bitmap);
    if (target === undefined || target.base % target.root.pageSize !== 0) throw notTracked(r);
    const { root, base } = target;
    root._mergeAt(log, base / root.pageSize, Math.ceil(r.length / root.pageSize));
  }

  /** Takes (or with `clear` false, reads) the dirty pages of every tracked region; see harvestDirty. */
  #takeDirty(clear: boolean): GuestDirtyRange[] {
    const out: GuestDirtyRange[] = [];
    for (const [root, pieces] of this.#tracking()) {
      appendGuestRanges(out, pieces, takeShown(root, pieces, clear).dirtyRanges());
    }
    // Several bitmaps (or aliases) interleave in guest order: sort, then join runs that touch.
    out.sort((a, b) => a.start - b.start);
    const joined: GuestDirtyRange[] = [];
    for (const r of out) {
      const last = joined[joined.length - 1];
      if (last !== undefined && last.start + last.length === r.start) joined[joined.length - 1] = { start: last.start, length: last.length + r.length };
      else joined.push(r);
    }
    return joined;
  }

  /**
   * For each bitmap the regions mark, the bitmap bytes that show in guest memory, each at the
   * lowest guest address that shows it, sorted by bitmap offset. Throws before anything is done
   * when a region has a bitmap of another kind.
   */
  #tracking(): Map<AtomicBitmap, Piece[]> {
    const byRoot = new Map<AtomicBitmap, Piece[]>();
    for (const r of this.#regions) {
      if (r.bitmap === NO_BITMAP) continue;
      const target = atomicBitmapTarget(r.bitmap);
      if (target === undefined) throw notTracked(r);
      let pieces = byRoot.get(target.root);
      if (pieces === undefined) byRoot.set(target.root, (pieces = []));
      // Regions come in guest order: keep only the bitmap bytes no lower region showed.
      for (const [from, to] of subtract([target.base, target.base + r.length], pieces)) {
        pieces.push({ from, to, guest: r.start + from - target.base });
      }
    }
    for (const pieces of byRoot.values()) pieces.sort((a, b) => a.from - b.from);
    return byRoot;
  }

  // ---- address resolution (the hot path) ------------------------------------------------------

  /** @internal */
  override _at(addr: number, size: number): number {
    return this.#resolve(addr, size, false);
  }

  /** @internal Same as `_at`; a read-only region (`_writeLength` -1) always misses. */
  override _atWrite(addr: number, size: number): number {
    return this.#resolve(addr, size, true);
  }

  /**
   * The fast path of `_at` / `_atWrite` (`write` is a constant at each call, so the choice folds
   * away once inlined): the last region hit, else the directory's candidate region. Anything
   * unusual (a bad address, a hole, a straddling value, a stale view, read-only memory) takes
   * the slow path, which sorts it out or throws.
   */
  #resolve(addr: number, size: number, write: boolean): number {
    if (typeof addr === 'number') {
      let r = this._span;
      let off = addr - r.start;
      // `off >>> 0 === off`: a non-negative integer below 2^32, which every offset in a region is.
      if (!(off >>> 0 === off && off <= (write ? r._writeLength : r.length) - size)) {
        if (!(addr >= 0 && addr < this.#end)) return this.#atSlow(addr, size, write);
        const c = Math.floor(addr * this.#perChunk);
        r = this.#chunkFirst[c];
        off = addr - r.start;
        if (off >= r.length) {
          // The chunk holds the end of one region and the start of the next (past a hole).
          r = this.#chunkSecond[c];
          off = addr - r.start;
        }
        if (!(off >>> 0 === off && off <= (write ? r._writeLength : r.length) - size)) return this.#atSlow(addr, size, write);
        this._span = r;
      }
      const abs = r.base + off;
      // A detached or closed buffer has length 0: the access misses and takes the slow path.
      if (abs + size <= r.v.u8.length) return abs;
    }
    return this.#atSlow(addr, size, write);
  }

  #atSlow(addr: number, size: number, write: boolean): number {
    validateIndex(addr, 'address');
    const i = this.#indexOf(addr);
    if (i < 0) throw invalidAddress(addr, size);
    const r = this.#table[i];
    const off = addr - r.start;
    if (off + size <= r.length) {
      if (write && r.readOnly) throw this._readOnly(addr, size);
      r._refresh();
      this._span = r;
      return r.base + off;
    }
    // The value continues into the next region(s): work on a scratch copy.
    this._checkRange(addr, size, write);
    let s = this.#scratch;
    if (s === undefined || s.bytes.length < size) s = this.#scratch = new ScratchSpan(Math.max(size, 64));
    // Piece by piece: each naturally aligned field lies in one region and is read with one access.
    this._copy(addr, s.bytes.subarray(0, size), false, true);
    this.#splitAddr = addr;
    this._span = s;
    return 0;
  }

  /** @internal Copies a straddling value written into the scratch span back to memory. */
  override _flush(size: number): void {
    this._copy(this.#splitAddr, (this.#scratch as ScratchSpan).bytes.subarray(0, size), true, true);
  }

  /**
   * Index of the region holding `addr`, or -1. The region holding an address of chunk `c`, if
   * any, is one of `directory[c] ..= directory[c + 1]`: usually one, so this is O(1).
   */
  #indexOf(addr: number): number {
    if (!(addr >= 0 && addr < this.#end)) return -1;
    const starts = this.#starts;
    const c = Math.floor(addr * this.#perChunk);
    let lo = this.#directory[c];
    let hi = this.#directory[c + 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= addr) lo = mid;
      else hi = mid - 1;
    }
    return addr >= starts[lo] && addr < this.#ends[lo] ? lo : -1;
  }

  /** @internal */
  override _extent(addr: number, length: number): number {
    let r = this._span;
    if (!(addr >= r.start && addr < r.end)) {
      const i = this.#indexOf(addr);
      if (i < 0) return -1;
      r = this.#table[i];
    }
    (r as GuestMemoryRegion)._refresh();
    const off = addr - r.start;
    this._span = r;
    this._run = Math.min(length, r.length - off);
    return r.base + off;
  }

  /** @internal */
  override _checkStart(addr: number, length = 0): void {
    validateIndex(addr, 'address');
    if (this.#indexOf(addr) < 0) throw invalidAddress(addr, length);
  }

  /** @internal */
  override _checkRange(addr: number, length: number, write = false): void {
    validateIndex(addr, 'address');
    validateIndex(length, 'length');
    const end = addr + length;
    // Inside the last region hit (never the scratch span: its bounds are NaN): no lookup.
    const last = this._span;
    if (addr >= last.start && end <= last.end && !(write && last.readOnly)) return;
    if (write) {
      for (let cur = addr; cur < end; ) {
        const i = this.#indexOf(cur);
        if (i < 0) throw invalidAddress(cur, length, addr);
        if (this.#table[i].readOnly) throw this._readOnly(cur, length, addr);
        cur = this.#ends[i];
      }
    } else {
      const hole = this.#firstHole(addr, end);
      if (hole >= 0) throw invalidAddress(hole, length, addr);
    }
  }

  /** The first address of `[addr, end)` that no region backs, or -1 when all of it is memory. */
  #firstHole(addr: number, end: number): number {
    for (let cur = addr; cur < end; ) {
      const i = this.#indexOf(cur);
      if (i < 0) return cur;
      cur = this.#ends[i];
    }
    return -1;
  }

  /** @internal */
  override _readOnly(addr: number, length: number, accessStart = addr): GuestMemoryError {
    const what = accessStart === addr ? '' : ` (write of ${length} bytes at ${hex(accessStart)})`;
    return new GuestMemoryError('ERR_READ_ONLY', `guest address ${hex(addr)} is in a read-only region${what}; nothing was written`, {
      address: addr,
      length,
    });
  }

  override toString(): string {
    return `GuestMemory(${this.#regions.map((r) => r.range.toString()).join(', ')})`;
  }
}

function notTracked(r: GuestMemoryRegion): GuestMemoryError {
  return new GuestMemoryError(
    'ERR_NOT_TRACKED',
    `the bitmap of region ${r.range} is a ${r.bitmap.constructor.name}, not an AtomicBitmap or a page-aligned slice of one: its dirty pages cannot be harvested or merged`,
    { address: r.start, length: r.length },
  );
}

/** Bitmap bytes `[from, to)` that show at guest address `guest` on. */
interface Piece {
  readonly from: number;
  readonly to: number;
  readonly guest: number;
}

/** The parts of `[from, to)` that no piece covers. */
function subtract([from, to]: [number, number], pieces: readonly Piece[]): [number, number][] {
  let parts: [number, number][] = [[from, to]];
  for (const p of pieces) {
    if (p.to <= from || p.from >= to) continue;
    parts = parts.flatMap(([a, b]): [number, number][] => {
      if (p.to <= a || p.from >= b) return [[a, b]];
      const rest: [number, number][] = [];
      if (a < p.from) rest.push([a, p.from]);
      if (p.to < b) rest.push([p.to, b]);
      return rest;
    });
  }
  return parts;
}

/** The dirty pages of `root` that the pieces touch, taken (cleared) with `clear`. */
function takeShown(root: AtomicBitmap, pieces: readonly Piece[], clear: boolean): AtomicBitmap {
  // The common case, a region with a bitmap of its own: all of it.
  if (pieces.length === 1 && pieces[0].from === 0 && pieces[0].to >= root.byteLength) return clear ? root.harvest() : root;
  const pages = new AtomicBitmap(root.byteLength, { pageSize: root.pageSize });
  for (const p of pieces) pages.markDirty(p.from, p.to - p.from);
  return root._takePages(pages, clear);
}

/** Appends the guest ranges of dirty bitmap runs: each run cut to the pieces (sorted by `from`) it meets. */
function appendGuestRanges(out: GuestDirtyRange[], pieces: readonly Piece[], runs: Iterable<DirtyRange>): void {
  let i = 0;
  for (const { offset, length } of runs) {
    const end = offset + length;
    while (i < pieces.length && pieces[i].to <= offset) i++;
    for (let j = i; j < pieces.length && pieces[j].from < end; j++) {
      const p = pieces[j];
      const from = Math.max(offset, p.from);
      const to = Math.min(end, p.to);
      out.push({ start: (p.guest + from - p.from) as GuestAddress, length: to - from });
    }
  }
}

function invalidAddress(addr: number, length: number, accessStart = addr): GuestMemoryError {
  const what = length > 0 ? ` (access of ${length} bytes at ${hex(accessStart)})` : '';
  return new GuestMemoryError('ERR_GUEST_ADDRESS_INVALID', `guest address ${hex(addr)} is not in any region${what}`, {
    address: addr,
    length,
  });
}

/**
 * A holder that gives readers a consistent {@link GuestMemory} while a writer swaps in a new one
 * (vm-memory's GuestMemoryAtomic). A reader keeps the value it got from {@link memory} for as long
 * as it works with it; hot-plug does not change it under the reader's feet.
 */
export class GuestMemoryAtomic {
  #current: GuestMemory;
  #updating = false;

  constructor(memory: GuestMemory) {
    this.#current = memory;
  }

  /** The current memory: a snapshot that never changes. */
  memory(): GuestMemory {
    return this.#current;
  }

  /**
   * Replaces the memory with `change(current)` (e.g. `m => m.insertRegion(r)`) and returns it.
   * If `change` throws, the memory stays as it was.
   *
   * @throws {GuestMemoryError} `ERR_UPDATE_IN_PROGRESS` when called from inside `change`.
   */
  update(change: (current: GuestMemory) => GuestMemory): GuestMemory {
    if (this.#updating) {
      throw new GuestMemoryError('ERR_UPDATE_IN_PROGRESS', 'GuestMemoryAtomic.update called from inside an update');
    }
    this.#updating = true;
    try {
      const next = change(this.#current);
      if (!(next instanceof GuestMemory)) {
        throw new GuestMemoryError('ERR_INVALID_ARG', 'an update must return a GuestMemory');
      }
      this.#current = next;
      return next;
    } finally {
      this.#updating = false;
    }
  }
}
