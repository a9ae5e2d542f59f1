import { validateIndex } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { type BackingViews, viewsOf } from '../backend/views.js';
import { type Bitmap, NO_BITMAP } from '../bitmap/bitmap.js';
import { validateBuffer } from '../bytes/access.js';
import { VolatileMemoryError } from '../bytes/errors.js';
import { moveSmall, SMALL_COPY_MAX } from '../bytes/pieces.js';
import type { ValueType } from '../bytes/values.js';
import { hex } from '../errors.js';
import { ContiguousBytes } from './contiguous.js';
import { VolatileArrayRef, VolatileRef } from './ref.js';

/**
 * A bounds-checked window over memory, addressed by offsets from its first byte.
 *
 * Slices come from regions and guest memory (`getSlice`), or wrap any `Uint8Array`, which makes
 * them a convenient test backend for device models. A slice taken from tracked memory marks the
 * same dirty bitmap as its region. It implements {@link Bytes} over plain number offsets.
 *
 * @example
 * const s = new VolatileSlice(new Uint8Array(64));
 * s.writeU32LE(4, 0xdeadbeef);
 * s.subslice(4, 4).readU32LE(0); // => 0xdeadbeef
 */
export class VolatileSlice extends ContiguousBytes<number> {
  /** @internal Where fresh views come from after a WebAssembly memory grew. */
  readonly _backend: MemoryBackend | undefined;

  /**
   * A slice over all of `bytes`.
   *
   * @param bitmap - Dirty bitmap covering `bytes` (default: untracked).
   */
  constructor(bytes: Uint8Array, bitmap?: Bitmap);
  /** @internal */
  constructor(v: BackingViews, base: number, length: number, bitmap: Bitmap, backend: MemoryBackend | undefined, readOnly: boolean);
  constructor(
    source: Uint8Array | BackingViews,
    baseOrBitmap?: number | Bitmap,
    length?: number,
    bitmap?: Bitmap,
    backend?: MemoryBackend,
    readOnly?: boolean,
  ) {
    if (typeof baseOrBitmap === 'number') {
      super(source as BackingViews, baseOrBitmap, length as number, bitmap as Bitmap, readOnly === true);
    } else {
      validateBuffer(source);
      super(viewsOf(source.buffer), source.byteOffset, source.length, baseOrBitmap ?? NO_BITMAP, false);
    }
    this._backend = backend;
  }

  /** @internal */
  override get _addrName(): string {
    return 'offset';
  }

  /** @internal */
  override _liveViews(): BackingViews {
    if (this._backend !== undefined) return this._backend.views();
    const v = viewsOf(this.v.buffer);
    if (this.v.buffer.byteLength === 0 && this.length > 0) {
      throw new VolatileMemoryError('ERR_DETACHED', 'the buffer behind this slice was detached');
    }
    return v;
  }

  /**
   * The `count` bytes at `offset`, as a slice of their own (sharing memory and dirty bitmap).
   *
   * @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS` when the range leaves this slice.
   */
  subslice(offset: number, count: number): VolatileSlice {
    validateIndex(offset, 'offset');
    validateIndex(count, 'count');
    if (offset + count > this.length) throw this._outOfBounds(offset, count);
    return new VolatileSlice(this.v, this.base + offset, count, this.bitmap.sliceAt(offset), this._backend, this.readOnly);
  }

  /** The slice from `count` bytes in to the end. */
  offset(count: number): VolatileSlice {
    validateIndex(count, 'count');
    if (count > this.length) throw this._outOfBounds(count, 0);
    return this.subslice(count, this.length - count);
  }

  /** Splits into `[0, mid)` and `[mid, length)`. */
  splitAt(mid: number): [VolatileSlice, VolatileSlice] {
    return [this.subslice(0, mid), this.offset(mid)];
  }

  /**
   * Copies `min(this.length, dst.length)` bytes from this slice to the start of `dst` and
   * returns the count. Overlapping slices of one buffer copy as memmove does. A copy of up to 8
   * bytes moves each naturally aligned piece of either slice with one access.
   *
   * @throws {VolatileMemoryError} `ERR_READ_ONLY` when `dst` is read-only (and bytes would move).
   */
  copyTo(dst: VolatileSlice): number {
    const n = Math.min(this.length, dst.length);
    if (n === 0) return 0;
    if (dst.readOnly) throw dst._readOnly(0, n);
    this._refresh();
    dst._refresh();
    if (n <= SMALL_COPY_MAX) moveSmall(this.v, this.base, dst.v, dst.base, n);
    else if (this.v.buffer === dst.v.buffer) dst.v.u8.copyWithin(dst.base, this.base, this.base + n);
    else dst.v.u8.set(this.v.u8.subarray(this.base, this.base + n), dst.base);
    dst.bitmap.markDirty(0, n);
    return n;
  }

  /** Copies `min(this.length, src.length)` bytes from the start of `src` into this slice. */
  copyFrom(src: VolatileSlice): number {
    return src.copyTo(this);
  }

  /**
   * A `Uint8Array` aliasing this slice's memory, for APIs that want raw bytes.
   *
   * With `'write'` the whole slice is marked dirty before the view is handed out (its writes can
   * no longer be seen); with `'read'` nothing is marked, so writing through it goes untracked.
   * After writing through a `'write'` view, call {@link VolatileSlice.markWritten}: a harvest
   * that ran between this mark and the write took the bit and copied the old page.
   * The view dies with its buffer: after a WebAssembly memory grows, take a new one.
   *
   * @throws {VolatileMemoryError} `ERR_READ_ONLY` for `'write'` on a read-only slice.
   */
  view(mode: 'read' | 'write'): Uint8Array {
    if (mode !== 'read' && mode !== 'write') {
      throw new VolatileMemoryError('ERR_INVALID_ARG', `mode must be 'read' or 'write', got ${String(mode)}`);
    }
    if (mode === 'write' && this.readOnly) throw this._readOnly(0, this.length);
    this._refresh();
    if (mode === 'write') this.bitmap.markDirty(0, this.length);
    return this.v.u8.subarray(this.base, this.base + this.length);
  }

  /**
   * Records that `[offset, offset + length)` of this slice was written through a raw view
   * ({@link VolatileSlice.view}, a readv into it, another worker's copy): marks those pages dirty
   * now, after the write. Every other write path of the slice marks by itself.
   *
   * @param offset - Default 0.
   * @param length - Default: the rest of the slice.
   * @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS` when the range leaves the slice,
   *   `ERR_READ_ONLY` on a read-only slice (nothing can have been written); nothing is marked.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a bad offset or length.
   */
  markWritten(offset = 0, length: number = this.length - offset): void {
    validateIndex(offset, 'offset');
    validateIndex(length, 'length');
    if (offset + length > this.length) throw this._outOfBounds(offset, length);
    if (this.readOnly && length > 0) throw this._readOnly(offset, length);
    this.bitmap.markDirty(offset, length);
  }

  /**
   * A reference to one value of `type` at `offset`.
   *
   * @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS`
   */
  getRef<T, W>(type: ValueType<T, W>, offset: number): VolatileRef<T, W> {
    return new VolatileRef(this.subslice(offset, type.size), type);
  }

  /**
   * A reference to `count` consecutive values of `type` starting at `offset`.
   *
   * @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS`; `ERR_TOO_BIG` (with `count` and
   * `elementSize`) when `count` values take more bytes than a safe integer can count.
   */
  getArrayRef<T, W>(type: ValueType<T, W>, offset: number, count: number): VolatileArrayRef<T, W> {
    validateIndex(count, 'count');
    const bytes = count * type.size;
    if (!Number.isSafeInteger(bytes)) {
      throw new VolatileMemoryError('ERR_TOO_BIG', `${count} values of ${type.size} bytes (${type.name}) are too many to address`, {
        address: offset,
        count,
        elementSize: type.size,
      });
    }
    return new VolatileArrayRef(this.subslice(offset, bytes), type, count);
  }

  override toString(): string {
    return `VolatileSlice(${hex(this.length)} bytes)`;
  }
}
