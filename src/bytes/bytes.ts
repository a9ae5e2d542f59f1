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
 * Naturally aligned values of up to 8 bytes are read and written with a single access, and so is
 * each naturally aligned piece of a copy of up to 8 bytes and each naturally aligned struct field
 * (also across two adjacent regions): another worker never sees a torn value.
 * The atomic `load`/`store`/`compareExchange` accesses need memory that other threads can share
 * (`ERR_NOT_SHARED` otherwise) and natural alignment (`ERR_MISALIGNED`).
 *
 * @typeParam A - The address kind.
 */
export interface Bytes<A extends number> {
  /**
   * Copies from memory at `addr` into `buf`, as much as fits; returns the count. It stops short
   * at the end of a slice or region, and in guest memory at a hole. When not even the byte at
   * `addr` is memory (at or past the end, in a hole) it throws `ERR_OUT_OF_BOUNDS` or
   * `ERR_GUEST_ADDRESS_INVALID`, so a copy loop never spins on a 0; an empty `buf` returns 0.
   */
  read(addr: A, buf: Uint8Array): number;
  /** Copies `buf` to memory at `addr`, as much as fits; returns the count. Bounds as {@link Bytes.read}. */
  write(addr: A, buf: Uint8Array): number;
  /** Fills all of `buf` from memory at `addr`, or throws and changes nothing. */
  readSlice(addr: A, buf: Uint8Array): void;
  /** Writes all of `buf` to memory at `addr`, or throws and changes nothing. */
  writeSlice(addr: A, buf: Uint8Array): void;
  /** Sets `length` bytes at `addr` to `value` (default 0), or throws and changes nothing. */
  fill(addr: A, length: number, value?: number): void;
  /** Sets `length` bytes at `addr` to zero. */
  zero(addr: A, length: number): void;

  /** Reads the u8 at `addr`. */
  readU8(addr: A): number;
  /** Reads the i8 at `addr`. */
  readI8(addr: A): number;
  /** Reads the little-endian u16 at `addr`. */
  readU16LE(addr: A): number;
  /** Reads the big-endian u16 at `addr`. */
  readU16BE(addr: A): number;
  /** Reads the little-endian i16 at `addr`. */
  readI16LE(addr: A): number;
  /** Reads the big-endian i16 at `addr`. */
  readI16BE(addr: A): number;
  /** Reads the little-endian u32 at `addr`. */
  readU32LE(addr: A): number;
  /** Reads the big-endian u32 at `addr`. */
  readU32BE(addr: A): number;
  /** Reads the little-endian i32 at `addr`. */
  readI32LE(addr: A): number;
  /** Reads the big-endian i32 at `addr`. */
  readI32BE(addr: A): number;
  /** Reads the little-endian u64 at `addr` as a bigint. */
  readU64LE(addr: A): bigint;
  /** Reads the big-endian u64 at `addr` as a bigint. */
  readU64BE(addr: A): bigint;
  /** Reads the little-endian i64 at `addr` as a bigint. */
  readI64LE(addr: A): bigint;
  /** Reads the big-endian i64 at `addr` as a bigint. */
  readI64BE(addr: A): bigint;
  /** A little-endian u64 as a number; throws `ERR_UNSAFE_INTEGER` when it is 2^53 or more. */
  readU64LEAsNumber(addr: A): number;
  /** A big-endian u64 as a number; throws `ERR_UNSAFE_INTEGER` when it is 2^53 or more. */
  readU64BEAsNumber(addr: A): number;
  /** Reads the little-endian f32 at `addr`. */
  readF32LE(addr: A): number;
  /** Reads the big-endian f32 at `addr`. */
  readF32BE(addr: A): number;
  /** Reads the little-endian f64 at `addr`. */
  readF64LE(addr: A): number;
  /** Reads the big-endian f64 at `addr`. */
  readF64BE(addr: A): number;

  /** Writes `value` as a u8 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeU8(addr: A, value: number): void;
  /** Writes `value` as a i8 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeI8(addr: A, value: number): void;
  /** Writes `value` as a little-endian u16 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeU16LE(addr: A, value: number): void;
  /** Writes `value` as a big-endian u16 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeU16BE(addr: A, value: number): void;
  /** Writes `value` as a little-endian i16 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeI16LE(addr: A, value: number): void;
  /** Writes `value` as a big-endian i16 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeI16BE(addr: A, value: number): void;
  /** Writes `value` as a little-endian u32 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeU32LE(addr: A, value: number): void;
  /** Writes `value` as a big-endian u32 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeU32BE(addr: A, value: number): void;
  /** Writes `value` as a little-endian i32 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeI32LE(addr: A, value: number): void;
  /** Writes `value` as a big-endian i32 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeI32BE(addr: A, value: number): void;
  /** Writes `value` as a little-endian u64 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. `value` is a bigint, or a number when it is a safe integer. */
  writeU64LE(addr: A, value: bigint | number): void;
  /** Writes `value` as a big-endian u64 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. `value` is a bigint, or a number when it is a safe integer. */
  writeU64BE(addr: A, value: bigint | number): void;
  /** Writes `value` as a little-endian i64 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. `value` is a bigint, or a number when it is a safe integer. */
  writeI64LE(addr: A, value: bigint | number): void;
  /** Writes `value` as a big-endian i64 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. `value` is a bigint, or a number when it is a safe integer. */
  writeI64BE(addr: A, value: bigint | number): void;
  /** Writes `value` as a little-endian f32 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeF32LE(addr: A, value: number): void;
  /** Writes `value` as a big-endian f32 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeF32BE(addr: A, value: number): void;
  /** Writes `value` as a little-endian f64 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeF64LE(addr: A, value: number): void;
  /** Writes `value` as a big-endian f64 at `addr`; a value out of range throws `ERR_VALUE_OUT_OF_RANGE` and writes nothing. */
  writeF64BE(addr: A, value: number): void;

  /** Reads a value of any {@link ValueType}. */
  readValue<T>(type: ValueType<T, any>, addr: A): T;
  /** Writes a value of any {@link ValueType}. */
  writeValue<W>(type: ValueType<any, W>, addr: A, value: W): void;
  /** Reads a whole struct, with one bounds check; each naturally aligned field with one access. */
  readStruct<F extends StructFields>(layout: StructLayout<F>, addr: A): StructValue<F>;
  /** Writes a whole struct: every field is checked first, then all are written. */
  writeStruct<F extends StructFields>(layout: StructLayout<F>, addr: A, value: StructInput<F>): void;

  // Atomic (sequentially consistent) accesses, little-endian, with Atomics. They need memory that
  // other threads can share (`ERR_NOT_SHARED` otherwise) and natural alignment (`ERR_MISALIGNED`).
  /** Atomically loads the u8 at `addr`. */
  loadU8(addr: A): number;
  /** Atomically loads the u16 at `addr`. */
  loadU16(addr: A): number;
  /** Atomically loads the u32 at `addr`. */
  loadU32(addr: A): number;
  /** Atomically loads the u64 at `addr`. */
  loadU64(addr: A): bigint;
  /** Atomically stores `value` as the u8 at `addr`. */
  storeU8(addr: A, value: number): void;
  /** Atomically stores `value` as the u16 at `addr`. */
  storeU16(addr: A, value: number): void;
  /** Atomically stores `value` as the u32 at `addr`. */
  storeU32(addr: A, value: number): void;
  /** Atomically stores `value` as the u64 at `addr`. */
  storeU64(addr: A, value: bigint): void;
  /** Atomically stores `replacement` as the u8 at `addr` if the value there is `expected`; returns the value found. */
  compareExchangeU8(addr: A, expected: number, replacement: number): number;
  /** Atomically stores `replacement` as the u16 at `addr` if the value there is `expected`; returns the value found. */
  compareExchangeU16(addr: A, expected: number, replacement: number): number;
  /** Atomically stores `replacement` as the u32 at `addr` if the value there is `expected`; returns the value found. */
  compareExchangeU32(addr: A, expected: number, replacement: number): number;
  /** Atomically stores `replacement` as the u64 at `addr` if the value there is `expected`; returns the value found. */
  compareExchangeU64(addr: A, expected: bigint, replacement: bigint): bigint;

  /**
   * Reads up to `count` bytes from file descriptor `fd` straight into memory at `addr` (no
   * intermediate buffer). `position` is a file offset, or `null` for the fd's current position.
   * Returns the bytes read: fewer at end of file, at a hole, or when a non-blocking fd has no more
   * data for now. EINTR is retried. Throws `ERR_IO` (with the system error as `cause`) when the
   * very first read fails; bounds as {@link Bytes.read} (a `count` of 0 returns 0).
   */
  readVolatileFrom(addr: A, fd: number, count: number, position?: number | null): number;
  /** Reads exactly `count` bytes; end of file first -> `ERR_PARTIAL_BUFFER` with `completed`. */
  readExactVolatileFrom(addr: A, fd: number, count: number, position?: number | null): void;
  /** Writes up to `count` bytes of memory at `addr` to `fd`; returns the count. */
  writeVolatileTo(addr: A, fd: number, count: number, position?: number | null): number;
  /** Writes exactly `count` bytes of memory at `addr` to `fd`. */
  writeAllVolatileTo(addr: A, fd: number, count: number, position?: number | null): void;
}
