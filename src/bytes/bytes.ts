import type { StructFields, StructInput, StructLayout, StructValue } from './struct.js';
import type { ValueType } from './values.js';

/**
 * The Bytes contract: reading and writing memory at addresses of kind `A`.
 *
 * Implemented by {@link VolatileSlice} (offsets into the slice), {@link GuestMemoryRegion}
 * (region addresses) and {@link GuestMemory} (guest physical addresses, across regions).
 *
 * Two families, as in vm-memory:
 * - **partial**: {@link Bytes.read} / {@link Bytes.write} move as many bytes as fit and return the
 *   count; {@link Bytes.readVolatileFrom} / {@link Bytes.writeVolatileTo} likewise for fds.
 * - **exact**: everything else moves all its bytes or throws. In-memory exact operations check the
 *   whole range before they touch a byte, so a failed one changes nothing.
 *
 * Read-only memory (a region built with `readOnly`, and slices of it) refuses every write path
 * with `ERR_READ_ONLY` before a byte changes; a partial write stops short before it and throws
 * only when its first byte is read-only.
 *
 * Multi-byte values name their byte order (`LE`/`BE`). 64-bit integers read as `bigint`; the
 * `AsNumber` reads return a number and throw `ERR_UNSAFE_INTEGER` rather than round a guest value.
 * Naturally aligned values of up to 8 bytes are read and written with a single access.
 *
 * @typeParam A - The address kind.
 */
export interface Bytes<A extends number> {
  /**
   * Copies from memory at `addr` into `buf`, as much as fits; returns the count.
   * At the end of a slice or region it returns 0; in guest memory it stops at a hole.
   */
  read(addr: A, buf: Uint8Array): number;
  /** Copies `buf` to memory at `addr`, as much as fits; returns the count. */
  write(addr: A, buf: Uint8Array): number;
  /** Fills all of `buf` from memory at `addr`, or throws and changes nothing. */
  readSlice(addr: A, buf: Uint8Array): void;
  /** Writes all of `buf` to memory at `addr`, or throws and changes nothing. */
  writeSlice(addr: A, buf: Uint8Array): void;
  /** Sets `length` bytes at `addr` to `value` (default 0), or throws and changes nothing. */
  fill(addr: A, length: number, value?: number): void;
  /** Sets `length` bytes at `addr` to zero. */
  zero(addr: A, length: number): void;

  readU8(addr: A): number;
  readI8(addr: A): number;
  readU16LE(addr: A): number;
  readU16BE(addr: A): number;
  readI16LE(addr: A): number;
  readI16BE(addr: A): number;
  readU32LE(addr: A): number;
  readU32BE(addr: A): number;
  readI32LE(addr: A): number;
  readI32BE(addr: A): number;
  readU64LE(addr: A): bigint;
  readU64BE(addr: A): bigint;
  readI64LE(addr: A): bigint;
  readI64BE(addr: A): bigint;
  /** A little-endian u64 as a number; throws `ERR_UNSAFE_INTEGER` when it is 2^53 or more. */
  readU64LEAsNumber(addr: A): number;
  /** A big-endian u64 as a number; throws `ERR_UNSAFE_INTEGER` when it is 2^53 or more. */
  readU64BEAsNumber(addr: A): number;
  readF32LE(addr: A): number;
  readF32BE(addr: A): number;
  readF64LE(addr: A): number;
  readF64BE(addr: A): number;

  /** Writes throw `ERR_VALUE_OUT_OF_RANGE` for a value the type cannot hold; nothing is written. */
  writeU8(addr: A, value: number): void;
  writeI8(addr: A, value: number): void;
  writeU16LE(addr: A, value: number): void;
  writeU16BE(addr: A, value: number): void;
  writeI16LE(addr: A, value: number): void;
  writeI16BE(addr: A, value: number): void;
  writeU32LE(addr: A, value: number): void;
  writeU32BE(addr: A, value: number): void;
  writeI32LE(addr: A, value: number): void;
  writeI32BE(addr: A, value: number): void;
  /** Takes a bigint, or a number when it is a non-negative safe integer. */
  writeU64LE(addr: A, value: bigint | number): void;
  writeU64BE(addr: A, value: bigint | number): void;
  writeI64LE(addr: A, value: bigint | number): void;
  writeI64BE(addr: A, value: bigint | number): void;
  writeF32LE(addr: A, value: number): void;
  writeF32BE(addr: A, value: number): void;
  writeF64LE(addr: A, value: number): void;
  writeF64BE(addr: A, value: number): void;

  /** Reads a value of any {@link ValueType}. */
  readValue<T>(type: ValueType<T, any>, addr: A): T;
  /** Writes a value of any {@link ValueType}. */
  writeValue<W>(type: ValueType<any, W>, addr: A, value: W): void;
  /** Reads a whole struct, with one bounds check. */
  readStruct<F extends StructFields>(layout: StructLayout<F>, addr: A): StructValue<F>;
  /** Writes a whole struct: every field is checked first, then all are written. */
  writeStruct<F extends StructFields>(layout: StructLayout<F>, addr: A, value: StructInput<F>): void;

  /**
   * Atomic (sequentially consistent) accesses, little-endian, with Atomics. They need memory that
   * other threads can share (`ERR_NOT_SHARED` otherwise) and natural alignment (`ERR_MISALIGNED`).
   */
  loadU8(addr: A): number;
  loadU16(addr: A): number;
  loadU32(addr: A): number;
  loadU64(addr: A): bigint;
  storeU8(addr: A, value: number): void;
  storeU16(addr: A, value: number): void;
  storeU32(addr: A, value: number): void;
  storeU64(addr: A, value: bigint): void;
  /** Stores `replacement` if the value is `expected`; returns the value found. */
  compareExchangeU8(addr: A, expected: number, replacement: number): number;
  compareExchangeU16(addr: A, expected: number, replacement: number): number;
  compareExchangeU32(addr: A, expected: number, replacement: number): number;
  compareExchangeU64(addr: A, expected: bigint, replacement: bigint): bigint;

  /**
   * Reads up to `count` bytes from file descriptor `fd` straight into memory at `addr` (no
   * intermediate buffer). `position` is a file offset, or `null` for the fd's current position.
   * Returns the bytes read: fewer at end of file, at a hole, or when a non-blocking fd has no more
   * data for now. EINTR is retried. Throws `ERR_IO` (with the system error as `cause`) when the
   * very first read fails.
   */
  readVolatileFrom(addr: A, fd: number, count: number, position?: number | null): number;
  /** Reads exactly `count` bytes; end of file first -> `ERR_PARTIAL_BUFFER` with `completed`. */
  readExactVolatileFrom(addr: A, fd: number, count: number, position?: number | null): void;
  /** Writes up to `count` bytes of memory at `addr` to `fd`; returns the count. */
  writeVolatileTo(addr: A, fd: number, count: number, position?: number | null): number;
  /** Writes exactly `count` bytes of memory at `addr` to `fd`. */
  writeAllVolatileTo(addr: A, fd: number, count: number, position?: number | null): void;
}
