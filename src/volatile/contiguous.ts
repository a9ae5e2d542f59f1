import { validateIndex } from '../address/address.js';
import type { BackingViews } from '../backend/views.js';
import { spanMarks } from '../bitmap/atomic-bitmap.js';
import type { Bitmap, PageMarks } from '../bitmap/bitmap.js';
import { ByteAccess, type Span } from '../bytes/access.js';
import { VolatileMemoryError } from '../bytes/errors.js';
import { hex } from '../errors.js';

/**
 * Bytes over one contiguous span of a buffer: the common ground of {@link VolatileSlice} (offsets)
 * and {@link GuestMemoryRegion} (region addresses). Addresses count from the span's first byte.
 */
export abstract class ContiguousBytes<A extends number> extends ByteAccess<A> implements Span {
  // `declare`: no class-field definition (which would store `undefined` first and leave V8 a
  // generic field representation); the constructor's first store makes them Smi fields.
  /** @internal */ declare v: BackingViews;
  /** @internal */ declare readonly base: number;
  /** Length in bytes. */
  declare readonly length: number;
  /** The dirty bitmap, offsets from the first byte. */
  declare readonly bitmap: Bitmap;
  /** True when every write path refuses this memory with `ERR_READ_ONLY`; reads work. */
  declare readonly readOnly: boolean;
  /**
   * @internal The bytes a write may reach: `length`, or -1 when read-only, so that the write fast
   * path costs what the read one does and a read-only span always takes the slow path.
   */
  declare readonly _writeLength: number;
  /** @internal */ readonly scratch = false;
  /** @internal */ declare readonly _marks: PageMarks | null;
  /** @internal */ declare readonly _markBase: number;

  constructor(v: BackingViews, base: number, length: number, bitmap: Bitmap, readOnly: boolean) {
    super();
    this.v = v;
    this.base = base;
    this.length = length;
    this.bitmap = bitmap;
    this.readOnly = readOnly;
    this._writeLength = readOnly ? -1 : length;
    const marks = spanMarks(bitmap, length);
    this._marks = marks === undefined ? null : marks.marks;
    this._markBase = marks === undefined ? 0 : marks.base;
    this._span = this;
  }

  /**
   * @internal Fresh views of the span's buffer: a WebAssembly memory that grew has a new buffer.
   * Throws when the memory is gone (closed backend, detached buffer).
   */
  abstract _liveViews(): BackingViews;

  /** @internal The name of an address in messages. */
  abstract get _addrName(): string;

  override _at(addr: number, size: number): number {
    // `addr >>> 0 === addr`: a non-negative integer below 2^32, as every offset in a view is.
    if (typeof addr === 'number' && addr >>> 0 === addr && addr <= this.length - size) {
      const abs = this.base + addr;
      // A detached or closed buffer has length 0: the access misses and takes the slow path.
      if (abs + size <= this.v.u8.length) return abs;
    }
    return this._atSlow(addr, size);
  }

  override _atWrite(addr: number, size: number): number {
    if (typeof addr === 'number' && addr >>> 0 === addr && addr <= this._writeLength - size) {
      const abs = this.base + addr;
      if (abs + size <= this.v.u8.length) return abs;
    }
    const abs = this._atSlow(addr, size);
    if (this.readOnly) throw this._readOnly(addr, size);
    return abs;
  }

  private _atSlow(addr: number, size: number): number {
    validateIndex(addr, this._addrName);
    if (addr + size > this.length) throw this._outOfBounds(addr, size);
    this._refresh();
    return this.base + addr;
  }

  /** @internal Re-reads the views when the cached ones no longer cover the span. */
  _refresh(): void {
    if (this.base + this.length <= this.v.u8.length) return;
    const v = this._liveViews();
    if (this.base + this.length > v.u8.length) {
      throw new VolatileMemoryError('ERR_DETACHED', `the memory behind this ${this._addrName} range is gone`, {
        length: this.length,
      });
    }
    this.v = v;
  }

  override _extent(addr: number, length: number): number {
    if (addr >= this.length) return -1;
    this._refresh();
    this._run = Math.min(length, this.length - addr);
    return this.base + addr;
  }

  override _checkStart(addr: number, length = 0): void {
    validateIndex(addr, this._addrName);
    // At the end too: a partial transfer that could move nothing would return 0 forever.
    if (addr >= this.length) throw this._outOfBounds(addr, length);
  }

  override _checkRange(addr: number, length: number, write = false): void {
    validateIndex(addr, this._addrName);
    validateIndex(length, 'length');
    if (length === 0) return;
    if (addr > this.length) throw this._outOfBounds(addr, length);
    if (addr + length > this.length) {
      throw new VolatileMemoryError(
        'ERR_PARTIAL_BUFFER',
        `${length} bytes at ${this._addrName} ${hex(addr)} run past the end (${hex(this.length)}); nothing was moved`,
        { address: addr, length, expected: length, completed: 0 },
      );
    }
    if (write && this.readOnly) throw this._readOnly(addr, length);
  }

  override _readOnly(addr: number, length: number): VolatileMemoryError {
    return new VolatileMemoryError('ERR_READ_ONLY', `${this._addrName} ${hex(addr)} (+${length}) is read-only memory; nothing was written`, {
      address: addr,
      length,
    });
  }

  /** @internal */
  _outOfBounds(addr: number, size: number): VolatileMemoryError {
    return new VolatileMemoryError(
      'ERR_OUT_OF_BOUNDS',
      `${this._addrName} ${hex(addr)} (+${size}) is outside [0, ${hex(this.length)})`,
      { address: addr, length: size },
    );
  }
}
