import { GuestAddress, MemoryRegionAddress, validateIndex } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import type { MemoryBackend } from '../backend/backend.js';
import type { BackingViews } from '../backend/views.js';
import { atomicBitmapTarget } from '../bitmap/atomic-bitmap.js';
import { type Bitmap, NO_BITMAP } from '../bitmap/bitmap.js';
import { hex } from '../errors.js';
import { ContiguousBytes } from '../volatile/contiguous.js';
import { VolatileSlice } from '../volatile/slice.js';
import { RegionError } from './errors.js';

/** Options of a {@link GuestMemoryRegion}. */
export interface RegionOptions {
  /** Where the region's bytes start in the backend (default 0). */
  offset?: number;
  /** Its length (default: the rest of the backend). */
  length?: number;
  /**
   * Its dirty bitmap, covering `length` bytes (default: untracked). An {@link AtomicBitmap} (or
   * a slice of one) that covers fewer bytes is refused.
   */
  bitmap?: Bitmap;
  /**
   * Refuse every write (`ERR_READ_ONLY`, before any byte changes), as for ROM. Default: the
   * backend's own `readOnly`; a read-only backend cannot back a writable region.
   */
  readOnly?: boolean;
}

/**
 * One contiguous range of guest physical memory over a backend: `[start, start + length)` in the
 * guest maps to `[offset, offset + length)` of the backend. It is {@link Bytes} over
 * {@link MemoryRegionAddress}es (offsets into the region). Immutable once built, so one region
 * can belong to several {@link GuestMemory} values (hot-plug builds new ones).
 */
export class GuestMemoryRegion extends ContiguousBytes<MemoryRegionAddress> {
  /** The guest physical address of the first byte. */
  declare readonly start: GuestAddress;
  /** The exclusive end, `start + length`. */
  declare readonly end: GuestAddress;
  /** Where the region's bytes live. */
  declare readonly backend: MemoryBackend;
  /** Where the region starts in its backend. */
  declare readonly offset: number;

  /**
   * @throws {RegionError} `ERR_REGION_EMPTY`, `ERR_REGION_OVERFLOW`, `ERR_REGION_BACKEND_RANGE`,
   * `ERR_REGION_BITMAP_RANGE` (an AtomicBitmap or slice of one that ends before the region:
   * `length` the bytes it covers, `expected` the region's length), `ERR_REGION_READ_ONLY_BACKEND`
   * (`readOnly: false` over a read-only backend), `ERR_INVALID_ARG`
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a malformed start, offset or length.
   */
  constructor(start: GuestAddress, backend: MemoryBackend, options: RegionOptions = {}) {
    validateIndex(start, 'start');
    const offset = validateIndex(options.offset ?? 0, 'offset');
    const length = validateIndex(options.length ?? Math.max(0, backend.size - offset), 'length');
    if (length === 0) {
      throw new RegionError('ERR_REGION_EMPTY', `the region at ${hex(start)} has no bytes`, { address: start, length });
    }
    if (start + length > Number.MAX_SAFE_INTEGER) {
      throw new RegionError('ERR_REGION_OVERFLOW', `the region at ${hex(start)} of ${hex(length)} bytes ends beyond 2^53`, {
        address: start,
        length,
      });
    }
    if (offset + length > backend.size) {
      throw new RegionError(
        'ERR_REGION_BACKEND_RANGE',
        `the region at ${hex(start)} wants backend bytes [${hex(offset)}, ${hex(offset + length)}) but the ${backend.kind} backend has ${hex(backend.size)}`,
        { address: start, length },
      );
    }
    const bitmap = options.bitmap ?? NO_BITMAP;
    checkBitmapCovers(start, bitmap, length);
    const readOnly = regionReadOnly(start, backend, options.readOnly);
    super(backend.views(), backend.byteOffset + offset, length, bitmap, readOnly);
    this.start = start;
    this.end = (start + length) as GuestAddress;
    this.backend = backend;
    this.offset = offset;
  }

  /** @internal */
  override get _addrName(): string {
    return 'region address';
  }

  /** @internal */
  override _liveViews(): BackingViews {
    return this.backend.views();
  }

  /** The guest address of the last byte. */
  lastAddress(): GuestAddress {
    return (this.end - 1) as GuestAddress;
  }

  /** The guest range the region covers. */
  get range(): AddressRange<GuestAddress> {
    return new AddressRange(this.start, this.end);
  }

  /** True when `addr` lies in the region. */
  containsAddress(addr: GuestAddress): boolean {
    return addr >= this.start && addr < this.end;
  }

  /** The region address of guest address `addr`, or `undefined` when it lies outside. */
  toRegionAddress(addr: GuestAddress): MemoryRegionAddress | undefined {
    validateIndex(addr, 'address');
    return this.containsAddress(addr) ? ((addr - this.start) as MemoryRegionAddress) : undefined;
  }

  /**
   * A slice of `count` bytes at region address `addr`, sharing memory and dirty bitmap.
   *
   * @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS`
   */
  getSlice(addr: MemoryRegionAddress, count: number): VolatileSlice {
    validateIndex(addr, this._addrName);
    validateIndex(count, 'count');
    if (addr + count > this.length) throw this._outOfBounds(addr, count);
    this._refresh();
    return new VolatileSlice(this.v, this.base + addr, count, this.bitmap.sliceAt(addr), this.backend, this.readOnly);
  }

  /** The whole region as a slice. */
  asVolatileSlice(): VolatileSlice {
    return this.getSlice(MemoryRegionAddress(0), this.length);
  }

  override toString(): string {
    return `GuestMemoryRegion(${this.range}, ${this.backend.kind}${this.readOnly ? ', read-only' : ''})`;
  }
}

/**
 * Throws unless `bitmap` covers `length` bytes. Only AtomicBitmaps (and their slices) say what
 * they cover; a write past a bitmap's end would land and then fail to mark, losing the page.
 */
function checkBitmapCovers(start: number, bitmap: Bitmap, length: number): void {
  const target = atomicBitmapTarget(bitmap);
  if (target === undefined) return;
  const covered = target.root.byteLength - target.base;
  if (covered < length) {
    throw new RegionError(
      'ERR_REGION_BITMAP_RANGE',
      `the region at ${hex(start)} has ${hex(length)} bytes but its dirty bitmap covers ${hex(covered)}`,
      { address: start, length: covered, expected: length },
    );
  }
}

/** Whether a region over `backend` is read-only, given what the options ask. */
function regionReadOnly(start: number, backend: MemoryBackend, asked: unknown): boolean {
  const backendReadOnly = backend.readOnly === true;
  if (asked === undefined) return backendReadOnly;
  if (typeof asked !== 'boolean') {
    throw new RegionError('ERR_INVALID_ARG', `readOnly must be a boolean, got ${typeof asked}`, { address: start });
  }
  if (!asked && backendReadOnly) {
    // Its owner declared the memory immutable; a writable private copy is a separate mapping.
    throw new RegionError('ERR_REGION_READ_ONLY_BACKEND', `the region at ${hex(start)} cannot be writable: its ${backend.kind} backend is read-only`, {
      address: start,
    });
  }
  return asked;
}
