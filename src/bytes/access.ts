/**
 * The Bytes contract implemented once, over two primitives each memory kind provides:
 * `_at` (where a small value lives) and `_extent` (how many contiguous bytes start at an address).
 * This plays the part of vm-memory's default trait methods.
 */
import { validateIndex } from '../address/address.js';
import type { BackingViews } from '../backend/views.js';
import type { Bitmap, PageMarks } from '../bitmap/bitmap.js';
import { hex } from '../errors.js';
import type { Bytes } from './bytes.js';
import { VolatileMemoryError } from './errors.js';
import { type FilePosition, transfer, validateFd, validatePosition } from './fd-io.js';
import { copyPieces, copySmall, SMALL_COPY_MAX } from './pieces.js';
import type { StructFields, StructInput, StructLayout, StructValue } from './struct.js';
import * as c from './values.js';
import type { ValueType } from './values.js';

/**
 * A contiguous run of memory as the accessors see it.
 * @internal
 */
export interface Span {
  /** Views of the buffer holding the span (replaced when a WebAssembly memory grows). */
  v: BackingViews;
  /** Offset of the span's first byte in those views. */
  readonly base: number;
  /** Dirty bitmap, with offsets from the span's first byte. */
  readonly bitmap: Bitmap;
  /**
   * Where value writes store their dirty marks (`spanMarks`), or null when they call
   * `bitmap.markDirty`.
   */
  readonly _marks: PageMarks | null;
  /** The marks' byte offset of the span's first byte. */
  readonly _markBase: number;
  /** True only for the scratch copy of a value that straddles two regions. */
  readonly scratch: boolean;
  /** True when writes must not reach the span. */
  readonly readOnly: boolean;
}

/**
 * Base of every {@link Bytes} implementation.
 *
 * Subclasses resolve addresses; this class does everything else, so the semantics (bounds,
 * values, dirty marking, atomics, fd transfers) are written, and tested, once.
 *
 * @typeParam A - The address kind.
 */
export abstract class ByteAccess<A extends number> implements Bytes<A> {
  /** @internal The span the last `_at` or `_extent` resolved into. */
  declare _span: Span;
  /** @internal Contiguous bytes available at the address the last `_extent` resolved. */
  _run = 0;

  /**
   * @internal Resolves a value access of `size` bytes at `addr` to an absolute offset into
   * `this._span.v`, or throws when any byte of it is not memory. Hot path: allocation-free.
   */
  abstract _at(addr: number, size: number): number;

  /**
   * @internal As {@link ByteAccess._at}, for a write: also throws (the layer's `ERR_READ_ONLY`)
   * when any byte of the value is read-only memory, before anything is written. Subclasses with
   * a faster test override it.
   */
  _atWrite(addr: number, size: number): number {
    const a = this._at(addr, size);
    if (this._span.readOnly) throw this._readOnly(addr, size);
    return a;
  }

  /**
   * @internal Resolves `addr` for a bulk transfer of up to `length` bytes: the absolute offset
   * into `this._span.v`, with `this._run` set to the contiguous bytes there (at most `length`),
   * or -1 when no memory starts at `addr`. `addr` is already validated.
   */
  abstract _extent(addr: number, length: number): number;

  /**
   * @internal Throws unless a partial transfer of `length` (> 0, for the error) bytes may start
   * at `addr` (validated here): its first byte must be memory.
   */
  abstract _checkStart(addr: number, length?: number): void;

  /**
   * @internal Throws unless all of `[addr, addr + length)` is memory (validated here) and, for a
   * `write`, none of it is read-only.
   */
  abstract _checkRange(addr: number, length: number, write?: boolean): void;

  /** @internal The layer's `ERR_READ_ONLY` error for a refused write of `length` bytes at `addr`. */
  _readOnly(addr: number, length: number): Error {
    return new VolatileMemoryError('ERR_READ_ONLY', `${hex(addr)} (+${length}) is read-only memory; nothing was written`, {
      address: addr,
      length,
    });
  }

  /** @internal Writes a scratch span back; only memory that makes scratch spans overrides it. */
  _flush(_size: number): void {}

  /** @internal Completes a value write: dirty marking, or the write-back of a straddling value. */
  _done(abs: number, size: number): void {
    const s = this._span;
    if (s.scratch) {
      this._flush(size);
      return;
    }
    const m = s._marks;
    if (m !== null && size <= m.pageSize) {
      // A non-shared AtomicBitmap: a byte for the first page and one for the last, no call.
      const o = abs - s.base + s._markBase;
      const bytes = m.bytes;
      bytes[o >>> m.shift] = 1;
      bytes[(o + size - 1) >>> m.shift] = 1;
    } else {
      s.bitmap.markDirty(abs - s.base, size);
    }
  }

  // ---- bulk ------------------------------------------------------------------------------------

  read(addr: A, buf: Uint8Array): number {
    validateBuffer(buf);
    if (buf.length === 0) return validateIndex(addr, 'address') && 0;
    this._checkStart(addr, buf.length);
    return this._copy(addr, buf, false);
  }

  write(addr: A, buf: Uint8Array): number {
    validateBuffer(buf);
    if (buf.length === 0) return validateIndex(addr, 'address') && 0;
    this._checkStart(addr, buf.length);
    return this._copy(addr, buf, true);
  }

  readSlice(addr: A, buf: Uint8Array): void {
    validateBuffer(buf);
    this._checkRange(addr, buf.length);
    this._copy(addr, buf, false);
  }

  writeSlice(addr: A, buf: Uint8Array): void {
    validateBuffer(buf);
    this._checkRange(addr, buf.length, true);
    this._copy(addr, buf, true);
  }

  /**
   * @internal Copies between `buf` and memory from `addr` until `buf` is done or memory ends;
   * a copy to memory also stops before read-only memory (and throws if it starts there).
   * A run of up to 8 bytes, and with `pieces` every run (`buf` must not alias the memory then),
   * moves each naturally aligned piece of memory with one access; longer runs are memcpy.
   */
  _copy(addr: number, buf: Uint8Array, toMemory: boolean, pieces = false): number {
    const len = buf.length;
    let done = 0;
    while (done < len) {
      const abs = this._extent(addr + done, len - done);
      if (abs < 0) break;
      const n = this._run;
      const s = this._span;
      if (toMemory) {
        if (s.readOnly) {
          if (done === 0) throw this._readOnly(addr, len);
          break;
        }
        if (n <= SMALL_COPY_MAX) copySmall(s.v, abs, buf, done, n, true);
        else if (pieces) copyPieces(s.v, abs, buf, done, n, true);
        else s.v.u8.set(n === len ? buf : buf.subarray(done, done + n), abs);
        s.bitmap.markDirty(abs - s.base, n);
      } else if (n <= SMALL_COPY_MAX) {
        copySmall(s.v, abs, buf, done, n, false);
      } else if (pieces) {
        copyPieces(s.v, abs, buf, done, n, false);
      } else {
        // A view made from the buffer costs less than `subarray` (no species lookup).
        buf.set(new Uint8Array(s.v.buffer, abs, n), done);
      }
      done += n;
    }
    return done;
  }

  fill(addr: A, length: number, value: number = 0): void {
    validateIndex(length, 'length');
    c.checkU8(value);
    this._checkRange(addr, length, true);
    for (let done = 0; done < length; ) {
      const abs = this._extent(addr + done, length - done);
      const n = this._run;
      const s = this._span;
      s.v.u8.fill(value, abs, abs + n);
      s.bitmap.markDirty(abs - s.base, n);
      done += n;
    }
  }

  zero(addr: A, length: number): void {
    this.fill(addr, length, 0);
  }

  // ---- typed values ----------------------------------------------------------------------------

  readU8(addr: A): number {
    const a = this._at(addr, 1);
    return c.getU8(this._span.v, a);
  }
  readI8(addr: A): number {
    const a = this._at(addr, 1);
    return c.getI8(this._span.v, a);
  }
  readU16LE(addr: A): number {
    const a = this._at(addr, 2);
    return c.getU16LE(this._span.v, a);
  }
  readU16BE(addr: A): number {
    const a = this._at(addr, 2);
    return c.getU16BE(this._span.v, a);
  }
  readI16LE(addr: A): number {
    const a = this._at(addr, 2);
    return c.getI16LE(this._span.v, a);
  }
  readI16BE(addr: A): number {
    const a = this._at(addr, 2);
    return c.getI16BE(this._span.v, a);
  }
  readU32LE(addr: A): number {
    const a = this._at(addr, 4);
    return c.getU32LE(this._span.v, a);
  }
  readU32BE(addr: A): number {
    const a = this._at(addr, 4);
    return c.getU32BE(this._span.v, a);
  }
  readI32LE(addr: A): number {
    const a = this._at(addr, 4);
    return c.getI32LE(this._span.v, a);
  }
  readI32BE(addr: A): number {
    const a = this._at(addr, 4);
    return c.getI32BE(this._span.v, a);
  }
  readU64LE(addr: A): bigint {
    const a = this._at(addr, 8);
    return c.getU64LE(this._span.v, a);
  }
  readU64BE(addr: A): bigint {
    const a = this._at(addr, 8);
    return c.getU64BE(this._span.v, a);
  }
  readI64LE(addr: A): bigint {
    const a = this._at(addr, 8);
    return c.getI64LE(this._span.v, a);
  }
  readI64BE(addr: A): bigint {
    const a = this._at(addr, 8);
    return c.getI64BE(this._span.v, a);
  }
  readU64LEAsNumber(addr: A): number {
    const a = this._at(addr, 8);
    return c.getU64LEAsNumber(this._span.v, a);
  }
  readU64BEAsNumber(addr: A): number {
    const a = this._at(addr, 8);
    return c.getU64BEAsNumber(this._span.v, a);
  }
  readF32LE(addr: A): number {
    const a = this._at(addr, 4);
    return c.getF32LE(this._span.v, a);
  }
  readF32BE(addr: A): number {
    const a = this._at(addr, 4);
    return c.getF32BE(this._span.v, a);
  }
  readF64LE(addr: A): number {
    const a = this._at(addr, 8);
    return c.getF64LE(this._span.v, a);
  }
  readF64BE(addr: A): number {
    const a = this._at(addr, 8);
    return c.getF64BE(this._span.v, a);
  }

  writeU8(addr: A, value: number): void {
    c.checkU8(value);
    const a = this._atWrite(addr, 1);
    c.setU8(this._span.v, a, value);
    this._done(a, 1);
  }
  writeI8(addr: A, value: number): void {
    c.checkI8(value);
    const a = this._atWrite(addr, 1);
    c.setU8(this._span.v, a, value);
    this._done(a, 1);
  }
  writeU16LE(addr: A, value: number): void {
    c.checkU16(value);
    const a = this._atWrite(addr, 2);
    c.setU16LE(this._span.v, a, value);
    this._done(a, 2);
  }
  writeU16BE(addr: A, value: number): void {
    c.checkU16(value);
    const a = this._atWrite(addr, 2);
    c.setU16BE(this._span.v, a, value);
    this._done(a, 2);
  }
  writeI16LE(addr: A, value: number): void {
    c.checkI16(value);
    const a = this._atWrite(addr, 2);
    c.setU16LE(this._span.v, a, value);
    this._done(a, 2);
  }
  writeI16BE(addr: A, value: number): void {
    c.checkI16(value);
    const a = this._atWrite(addr, 2);
    c.setU16BE(this._span.v, a, value);
    this._done(a, 2);
  }
  writeU32LE(addr: A, value: number): void {
    c.checkU32(value);
    const a = this._atWrite(addr, 4);
    c.setU32LE(this._span.v, a, value);
    this._done(a, 4);
  }
  writeU32BE(addr: A, value: number): void {
    c.checkU32(value);
    const a = this._atWrite(addr, 4);
    c.setU32BE(this._span.v, a, value);
    this._done(a, 4);
  }
  writeI32LE(addr: A, value: number): void {
    c.checkI32(value);
    const a = this._atWrite(addr, 4);
    c.setU32LE(this._span.v, a, value);
    this._done(a, 4);
  }
  writeI32BE(addr: A, value: number): void {
    c.checkI32(value);
    const a = this._atWrite(addr, 4);
    c.setU32BE(this._span.v, a, value);
    this._done(a, 4);
  }
  writeU64LE(addr: A, value: bigint | number): void {
    c.checkU64(value);
    const a = this._atWrite(addr, 8);
    c.setU64LE(this._span.v, a, value);
    this._done(a, 8);
  }
  writeU64BE(addr: A, value: bigint | number): void {
    c.checkU64(value);
    const a = this._atWrite(addr, 8);
    c.setU64BE(this._span.v, a, value);
    this._done(a, 8);
  }
  writeI64LE(addr: A, value: bigint | number): void {
    c.checkI64(value);
    const a = this._atWrite(addr, 8);
    c.setU64LE(this._span.v, a, value);
    this._done(a, 8);
  }
  writeI64BE(addr: A, value: bigint | number): void {
    c.checkI64(value);
    const a = this._atWrite(addr, 8);
    c.setU64BE(this._span.v, a, value);
    this._done(a, 8);
  }
  writeF32LE(addr: A, value: number): void {
    c.checkFloat(value);
    const a = this._atWrite(addr, 4);
    c.setF32LE(this._span.v, a, value);
    this._done(a, 4);
  }
  writeF32BE(addr: A, value: number): void {
    c.checkFloat(value);
    const a = this._atWrite(addr, 4);
    c.setF32BE(this._span.v, a, value);
    this._done(a, 4);
  }
  writeF64LE(addr: A, value: number): void {
    c.checkFloat(value);
    const a = this._atWrite(addr, 8);
    c.setF64LE(this._span.v, a, value);
    this._done(a, 8);
  }
  writeF64BE(addr: A, value: number): void {
    c.checkFloat(value);
    const a = this._atWrite(addr, 8);
    c.setF64BE(this._span.v, a, value);
    this._done(a, 8);
  }

  readValue<T>(type: ValueType<T, any>, addr: A): T {
    const a = this._at(addr, type.size);
    return type.get(this._span.v, a);
  }
  writeValue<W>(type: ValueType<any, W>, addr: A, value: W): void {
    type.check(value);
    const a = this._atWrite(addr, type.size);
    type.set(this._span.v, a, value);
    this._done(a, type.size);
  }

  readStruct<F extends StructFields>(layout: StructLayout<F>, addr: A): StructValue<F> {
    const a = this._at(addr, layout.size);
    return layout.decode(this._span.v, a);
  }
  writeStruct<F extends StructFields>(layout: StructLayout<F>, addr: A, value: StructInput<F>): void {
    layout.check(value);
    const a = this._atWrite(addr, layout.size);
    layout.encodeChecked(this._span.v, a);
    this._done(a, layout.size);
  }

  // ---- atomics ---------------------------------------------------------------------------------

  /** @internal Resolves an atomic access: shared memory, naturally aligned, one span. */
  _atomic(addr: number, size: number, write: boolean): number {
    const a = write ? this._atWrite(addr, size) : this._at(addr, size);
    const s = this._span;
    if (s.scratch || (a & (size - 1)) !== 0) {
      throw new VolatileMemoryError(
        'ERR_MISALIGNED',
        `an atomic ${size}-byte access at ${hex(addr)} must be naturally aligned within one region`,
        { address: addr, length: size },
      );
    }
    if (!s.v.shared) {
      throw new VolatileMemoryError(
        'ERR_NOT_SHARED',
        `atomic access at ${hex(addr)} needs memory other threads can share (SharedArrayBuffer or native shared memory)`,
        { address: addr, length: size },
      );
    }
    return a;
  }

  loadU8(addr: A): number {
    const a = this._atomic(addr, 1, false);
    return Atomics.load(this._span.v.u8, a);
  }
  loadU16(addr: A): number {
    const a = this._atomic(addr, 2, false);
    return Atomics.load(this._span.v.u16, a >>> 1);
  }
  loadU32(addr: A): number {
    const a = this._atomic(addr, 4, false);
    return Atomics.load(this._span.v.u32, a >>> 2);
  }
  loadU64(addr: A): bigint {
    const a = this._atomic(addr, 8, false);
    return Atomics.load(this._span.v.u64, a >>> 3);
  }
  storeU8(addr: A, value: number): void {
    c.checkU8(value);
    const a = this._atomic(addr, 1, true);
    Atomics.store(this._span.v.u8, a, value);
    this._done(a, 1);
  }
  storeU16(addr: A, value: number): void {
    c.checkU16(value);
    const a = this._atomic(addr, 2, true);
    Atomics.store(this._span.v.u16, a >>> 1, value);
    this._done(a, 2);
  }
  storeU32(addr: A, value: number): void {
    c.checkU32(value);
    const a = this._atomic(addr, 4, true);
    Atomics.store(this._span.v.u32, a >>> 2, value);
    this._done(a, 4);
  }
  storeU64(addr: A, value: bigint): void {
    checkBigU64(value);
    const a = this._atomic(addr, 8, true);
    Atomics.store(this._span.v.u64, a >>> 3, value);
    this._done(a, 8);
  }
  compareExchangeU8(addr: A, expected: number, replacement: number): number {
    c.checkU8(expected);
    c.checkU8(replacement);
    const a = this._atomic(addr, 1, true);
    const old = Atomics.compareExchange(this._span.v.u8, a, expected, replacement);
    if (old === expected) this._done(a, 1);
    return old;
  }
  compareExchangeU16(addr: A, expected: number, replacement: number): number {
    c.checkU16(expected);
    c.checkU16(replacement);
    const a = this._atomic(addr, 2, true);
    const old = Atomics.compareExchange(this._span.v.u16, a >>> 1, expected, replacement);
    if (old === expected) this._done(a, 2);
    return old;
  }
  compareExchangeU32(addr: A, expected: number, replacement: number): number {
    c.checkU32(expected);
    c.checkU32(replacement);
    const a = this._atomic(addr, 4, true);
    const old = Atomics.compareExchange(this._span.v.u32, a >>> 2, expected, replacement);
    if (old === expected) this._done(a, 4);
    return old;
  }
  compareExchangeU64(addr: A, expected: bigint, replacement: bigint): bigint {
    checkBigU64(expected);
    checkBigU64(replacement);
    const a = this._atomic(addr, 8, true);
    const old = Atomics.compareExchange(this._span.v.u64, a >>> 3, expected, replacement);
    if (old === expected) this._done(a, 8);
    return old;
  }

  // ---- file descriptors ------------------------------------------------------------------------

  readVolatileFrom(addr: A, fd: number, count: number, position: FilePosition = null): number {
    return this._fdTransfer(addr, fd, count, position, true, false);
  }
  readExactVolatileFrom(addr: A, fd: number, count: number, position: FilePosition = null): void {
    this._fdTransfer(addr, fd, count, position, true, true);
  }
  writeVolatileTo(addr: A, fd: number, count: number, position: FilePosition = null): number {
    return this._fdTransfer(addr, fd, count, position, false, false);
  }
  writeAllVolatileTo(addr: A, fd: number, count: number, position: FilePosition = null): void {
    this._fdTransfer(addr, fd, count, position, false, true);
  }

  /**
   * @internal One fd transfer (partial: a single readv/writev over the contiguous memory at
   * `addr`), or a loop of them until `count` bytes moved (exact).
   */
  _fdTransfer(addr: number, fd: number, count: number, position: FilePosition, toMemory: boolean, exact: boolean): number {
    fd = validateFd(fd);
    validateIndex(count, 'count');
    let pos = validatePosition(position);
    if (count === 0) return validateIndex(addr, 'address') && 0;
    if (exact) this._checkRange(addr, count, toMemory);
    else this._checkStart(addr, count);
    let done = 0;
    do {
      const views: Uint8Array[] = [];
      for (let want = 0; want < count - done; ) {
        const abs = this._extent(addr + done + want, count - done - want);
        if (abs < 0) break;
        if (toMemory && this._span.readOnly) {
          if (done + want === 0) throw this._readOnly(addr, count);
          break;
        }
        views.push(this._span.v.u8.subarray(abs, abs + this._run));
        want += this._run;
      }
      if (views.length === 0) break;
      const n = transfer(fd, views, pos, toMemory, done);
      if (toMemory) this._markRange(addr + done, n);
      done += n;
      if (pos !== null) pos += n;
      if (n === 0) {
        if (exact) {
          throw new VolatileMemoryError(
            'ERR_PARTIAL_BUFFER',
            `${toMemory ? 'end of file' : 'the file descriptor took no more'} after ${done} of ${count} bytes at ${hex(addr)}`,
            { address: addr, expected: count, completed: done },
          );
        }
        break;
      }
    } while (exact && done < count);
    return done;
  }

  /** @internal Marks `[addr, addr + length)` dirty, span by span. */
  _markRange(addr: number, length: number): void {
    for (let done = 0; done < length; ) {
      const abs = this._extent(addr + done, length - done);
      const s = this._span;
      s.bitmap.markDirty(abs - s.base, this._run);
      done += this._run;
    }
  }
}

function checkBigU64(x: bigint): void {
  if (typeof x !== 'bigint') {
    throw new VolatileMemoryError('ERR_VALUE_OUT_OF_RANGE', 'atomic 64-bit values are bigints');
  }
  c.checkU64(x);
}

/** Throws unless `buf` is a Uint8Array (a Buffer is one). */
export function validateBuffer(buf: unknown): asserts buf is Uint8Array {
  if (!(buf instanceof Uint8Array)) {
    throw new VolatileMemoryError('ERR_INVALID_ARG', `buffer must be a Uint8Array, got ${buf === null ? 'null' : typeof buf}`);
  }
}
