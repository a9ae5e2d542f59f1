/**
 * Typed values in guest memory: codecs and the {@link ValueType} descriptors built on them.
 *
 * Every codec works on absolute offsets into {@link BackingViews}. A naturally aligned access goes
 * through the typed array of its width, which V8 performs as one load or store, so another worker
 * never sees a torn value (the byte-by-byte copy behind vm-memory's DoS #93 cannot happen here);
 * only misaligned accesses fall back to DataView. Offsets are below 2^32 (a view covers at most
 * 4 GiB), which is what makes `a >>> 2` a valid index.
 */
import { BackingViews } from '../backend/views.js';
import { describe } from '../address/address.js';
import { hex } from '../errors.js';
import { VolatileMemoryError } from './errors.js';

/** Scratch space for moving bits between number and integer forms without allocating. */
const S = new BackingViews(new ArrayBuffer(8), false);
const TWO_32 = 2 ** 32;

function bswap16(x: number): number {
  return ((x & 0xff) << 8) | (x >>> 8);
}

function bswap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

// ---- reads -------------------------------------------------------------------------------------

export function getU8(v: BackingViews, a: number): number {
  return v.u8[a];
}
export function getI8(v: BackingViews, a: number): number {
  return (v.u8[a] << 24) >> 24;
}
export function getU16LE(v: BackingViews, a: number): number {
  return (a & 1) === 0 ? v.u16[a >>> 1] : v.dv.getUint16(a, true);
}
export function getU16BE(v: BackingViews, a: number): number {
  return (a & 1) === 0 ? bswap16(v.u16[a >>> 1]) : v.dv.getUint16(a, false);
}
export function getI16LE(v: BackingViews, a: number): number {
  return (getU16LE(v, a) << 16) >> 16;
}
export function getI16BE(v: BackingViews, a: number): number {
  return (getU16BE(v, a) << 16) >> 16;
}
export function getU32LE(v: BackingViews, a: number): number {
  return (a & 3) === 0 ? v.u32[a >>> 2] : v.dv.getUint32(a, true);
}
export function getU32BE(v: BackingViews, a: number): number {
  return (a & 3) === 0 ? bswap32(v.u32[a >>> 2]) : v.dv.getUint32(a, false);
}
export function getI32LE(v: BackingViews, a: number): number {
  return (a & 3) === 0 ? v.i32[a >>> 2] : v.dv.getInt32(a, true);
}
export function getI32BE(v: BackingViews, a: number): number {
  return getU32BE(v, a) | 0;
}
export function getU64LE(v: BackingViews, a: number): bigint {
  return (a & 7) === 0 ? v.u64[a >>> 3] : v.dv.getBigUint64(a, true);
}
export function getU64BE(v: BackingViews, a: number): bigint {
  if ((a & 7) !== 0) return v.dv.getBigUint64(a, false);
  S.u64[0] = v.u64[a >>> 3];
  return S.dv.getBigUint64(0, false);
}
export function getI64LE(v: BackingViews, a: number): bigint {
  return (a & 7) === 0 ? v.i64[a >>> 3] : v.dv.getBigInt64(a, true);
}
export function getI64BE(v: BackingViews, a: number): bigint {
  if ((a & 7) !== 0) return v.dv.getBigInt64(a, false);
  S.u64[0] = v.u64[a >>> 3];
  return S.dv.getBigInt64(0, false);
}

/**
 * A little-endian u64 as a number; throws when it is not a safe integer.
 *
 * The aligned load moves the 8 bytes through a Float64Array: one access, no BigInt. Should the
 * engine canonicalise a NaN bit pattern on the way, the high word still has its exponent bits
 * set, so the value is refused all the same; the error re-reads the exact value.
 */
export function getU64LEAsNumber(v: BackingViews, a: number): number {
  let lo: number;
  let hi: number;
  if ((a & 7) === 0) {
    S.f64[0] = v.f64[a >>> 3];
    lo = S.u32[0];
    hi = S.u32[1];
  } else {
    lo = v.dv.getUint32(a, true);
    hi = v.dv.getUint32(a + 4, true);
  }
  if (hi > 0x1f_ffff) throw unsafeInteger(getU64LE(v, a));
  return hi * TWO_32 + lo;
}
export function getU64BEAsNumber(v: BackingViews, a: number): number {
  const x = getU64BE(v, a);
  if (x > 0x1f_ffff_ffff_ffffn) throw unsafeInteger(x);
  return Number(x);
}
export function getF32LE(v: BackingViews, a: number): number {
  return (a & 3) === 0 ? v.f32[a >>> 2] : v.dv.getFloat32(a, true);
}
export function getF32BE(v: BackingViews, a: number): number {
  if ((a & 3) !== 0) return v.dv.getFloat32(a, false);
  S.u32[0] = bswap32(v.u32[a >>> 2]);
  return S.f32[0];
}
export function getF64LE(v: BackingViews, a: number): number {
  return (a & 7) === 0 ? v.f64[a >>> 3] : v.dv.getFloat64(a, true);
}
export function getF64BE(v: BackingViews, a: number): number {
  if ((a & 7) !== 0) return v.dv.getFloat64(a, false);
  // Through the integer view: a NaN's payload must survive the byte swap exactly.
  S.u64[0] = v.u64[a >>> 3];
  return S.dv.getFloat64(0, false);
}

// ---- writes (values already checked) -----------------------------------------------------------

export function setU8(v: BackingViews, a: number, x: number): void {
  v.u8[a] = x;
}
export function setU16LE(v: BackingViews, a: number, x: number): void {
  if ((a & 1) === 0) v.u16[a >>> 1] = x;
  else v.dv.setUint16(a, x, true);
}
export function setU16BE(v: BackingViews, a: number, x: number): void {
  if ((a & 1) === 0) v.u16[a >>> 1] = bswap16(x & 0xffff);
  else v.dv.setUint16(a, x, false);
}
export function setU32LE(v: BackingViews, a: number, x: number): void {
  if ((a & 3) === 0) v.u32[a >>> 2] = x;
  else v.dv.setUint32(a, x, true);
}
export function setU32BE(v: BackingViews, a: number, x: number): void {
  if ((a & 3) === 0) v.u32[a >>> 2] = bswap32(x >>> 0);
  else v.dv.setUint32(a, x, false);
}
/** Also serves i64: the two's complement bits are the same. */
export function setU64LE(v: BackingViews, a: number, x: bigint | number): void {
  if (typeof x === 'number') {
    if (x < 0) x = BigInt(x);
    else {
      if ((a & 7) === 0) {
        // A non-negative safe integer's bits read as a double are a subnormal or tiny normal,
        // never a NaN, so the one 8-byte store through Float64Array is bit-exact.
        S.u32[0] = x >>> 0;
        S.u32[1] = Math.floor(x / TWO_32);
        v.f64[a >>> 3] = S.f64[0];
      } else {
        v.dv.setUint32(a, x >>> 0, true);
        v.dv.setUint32(a + 4, Math.floor(x / TWO_32), true);
      }
      return;
    }
  }
  if ((a & 7) === 0) v.u64[a >>> 3] = x;
  else v.dv.setBigUint64(a, x, true);
}
export function setU64BE(v: BackingViews, a: number, x: bigint | number): void {
  const b = typeof x === 'number' ? BigInt(x) : x;
  if ((a & 7) !== 0) {
    v.dv.setBigUint64(a, b, false);
    return;
  }
  S.dv.setBigUint64(0, b, false);
  v.u64[a >>> 3] = S.u64[0];
}
export function setF32LE(v: BackingViews, a: number, x: number): void {
  if ((a & 3) === 0) v.f32[a >>> 2] = x;
  else v.dv.setFloat32(a, x, true);
}
export function setF32BE(v: BackingViews, a: number, x: number): void {
  if ((a & 3) !== 0) {
    v.dv.setFloat32(a, x, false);
    return;
  }
  S.f32[0] = x;
  v.u32[a >>> 2] = bswap32(S.u32[0]);
}
export function setF64LE(v: BackingViews, a: number, x: number): void {
  if ((a & 7) === 0) v.f64[a >>> 3] = x;
  else v.dv.setFloat64(a, x, true);
}
export function setF64BE(v: BackingViews, a: number, x: number): void {
  if ((a & 7) !== 0) {
    v.dv.setFloat64(a, x, false);
    return;
  }
  S.dv.setFloat64(0, x, false);
  v.u64[a >>> 3] = S.u64[0];
}

// ---- value checks ------------------------------------------------------------------------------
// `typeof` first: the bit operations throw a plain TypeError on a bigint (or a symbol).

export function checkU8(x: number): void {
  if (typeof x !== 'number' || (x & 0xff) !== x) throw outOfRange(x, 'u8');
}
export function checkI8(x: number): void {
  if (typeof x !== 'number' || (x << 24) >> 24 !== x) throw outOfRange(x, 'i8');
}
export function checkU16(x: number): void {
  if (typeof x !== 'number' || (x & 0xffff) !== x) throw outOfRange(x, 'u16');
}
export function checkI16(x: number): void {
  if (typeof x !== 'number' || (x << 16) >> 16 !== x) throw outOfRange(x, 'i16');
}
export function checkU32(x: number): void {
  if (typeof x !== 'number' || x >>> 0 !== x) throw outOfRange(x, 'u32');
}
export function checkI32(x: number): void {
  if (typeof x !== 'number' || (x | 0) !== x) throw outOfRange(x, 'i32');
}
// A bigint fits 64 bits when truncating it changes nothing: V8 lowers `asUintN(64)` to a word
// operation, where range comparisons against bigint constants call a builtin (~4 ns vs ~1.5 ns).
export function checkU64(x: bigint | number): void {
  if (typeof x === 'bigint' ? BigInt.asUintN(64, x) === x : Number.isSafeInteger(x) && x >= 0) return;
  throw outOfRange(x, 'u64');
}
export function checkI64(x: bigint | number): void {
  if (typeof x === 'bigint' ? BigInt.asIntN(64, x) === x : Number.isSafeInteger(x)) return;
  throw outOfRange(x, 'i64');
}
export function checkFloat(x: number): void {
  if (typeof x !== 'number') throw outOfRange(x, 'float');
}

function outOfRange(x: unknown, type: string): VolatileMemoryError {
  return new VolatileMemoryError('ERR_VALUE_OUT_OF_RANGE', `value ${describe(x)} does not fit ${type}`);
}

function unsafeInteger(x: bigint): VolatileMemoryError {
  return new VolatileMemoryError(
    'ERR_UNSAFE_INTEGER',
    `guest value ${hex(x)} is not a safe integer (>= 2^53); read it as a bigint instead`,
  );
}

// ---- descriptors -------------------------------------------------------------------------------

/**
 * A fixed-size value in guest memory with an explicit byte order, e.g. {@link u32le}.
 * Used for struct fields, {@link VolatileRef}s and the generic `readValue`/`writeValue`.
 *
 * @typeParam T - What it reads as: `number`, or `bigint` for the 64-bit integer types.
 * @typeParam W - What it accepts when written (64-bit types also take safe-integer numbers).
 */
export interface ValueType<T = number | bigint, W = T> {
  /** The type's name, e.g. `'u32le'`. */
  readonly name: string;
  /** Its size in bytes; it is naturally aligned at a multiple of this. */
  readonly size: 1 | 2 | 4 | 8;
  /** @internal */ readonly get: (v: BackingViews, a: number) => T;
  /** @internal */ readonly set: (v: BackingViews, a: number, x: W) => void;
  /** @internal Throws `ERR_VALUE_OUT_OF_RANGE` for a value the type cannot hold. */
  readonly check: (x: W) => void;
}

/** The type a {@link ValueType} reads as. */
// `any`, not `unknown`: W sits in parameter position, so ValueType<T, number> does not extend ValueType<T, unknown>.
export type ValueOf<V> = V extends ValueType<infer T, any> ? T : never;
/** The type a {@link ValueType} accepts when written. */
export type InputOf<V> = V extends ValueType<any, infer W> ? W : never;

function vt<T, W>(name: string, size: 1 | 2 | 4 | 8, get: ValueType<T, W>['get'], set: ValueType<T, W>['set'], check: ValueType<T, W>['check']): ValueType<T, W> {
  return Object.freeze({ name, size, get, set, check });
}

/** What a 64-bit integer write takes: a bigint, or a number when it is a safe integer. */
export type U64In = bigint | number;

/** An unsigned byte. */
export const u8 = vt<number, number>('u8', 1, getU8, setU8, checkU8);
/** A signed byte. */
export const i8 = vt<number, number>('i8', 1, getI8, setU8, checkI8);
/** An unsigned little-endian 16-bit integer. */
export const u16le = vt<number, number>('u16le', 2, getU16LE, setU16LE, checkU16);
/** An unsigned big-endian 16-bit integer. */
export const u16be = vt<number, number>('u16be', 2, getU16BE, setU16BE, checkU16);
/** A signed little-endian 16-bit integer. */
export const i16le = vt<number, number>('i16le', 2, getI16LE, setU16LE, checkI16);
/** A signed big-endian 16-bit integer. */
export const i16be = vt<number, number>('i16be', 2, getI16BE, setU16BE, checkI16);
/** An unsigned little-endian 32-bit integer. */
export const u32le = vt<number, number>('u32le', 4, getU32LE, setU32LE, checkU32);
/** An unsigned big-endian 32-bit integer. */
export const u32be = vt<number, number>('u32be', 4, getU32BE, setU32BE, checkU32);
/** A signed little-endian 32-bit integer. */
export const i32le = vt<number, number>('i32le', 4, getI32LE, setU32LE, checkI32);
/** A signed big-endian 32-bit integer. */
export const i32be = vt<number, number>('i32be', 4, getI32BE, setU32BE, checkI32);
/** An unsigned little-endian 64-bit integer (read as a bigint). */
export const u64le = vt<bigint, U64In>('u64le', 8, getU64LE, setU64LE, checkU64);
/** An unsigned big-endian 64-bit integer (read as a bigint). */
export const u64be = vt<bigint, U64In>('u64be', 8, getU64BE, setU64BE, checkU64);
/** A signed little-endian 64-bit integer (read as a bigint). */
export const i64le = vt<bigint, U64In>('i64le', 8, getI64LE, setU64LE, checkI64);
/** A signed big-endian 64-bit integer (read as a bigint). */
export const i64be = vt<bigint, U64In>('i64be', 8, getI64BE, setU64BE, checkI64);
/** A little-endian u64 read as a number: refuses values that are not safe integers. */
export const u64leNumber = vt<number, number>('u64leNumber', 8, getU64LEAsNumber, setU64LE, checkU64);
/** A big-endian u64 read as a number: refuses values that are not safe integers. */
export const u64beNumber = vt<number, number>('u64beNumber', 8, getU64BEAsNumber, setU64BE, checkU64);
/** An IEEE 754 little-endian 32-bit float. */
export const f32le = vt<number, number>('f32le', 4, getF32LE, setF32LE, checkFloat);
/** An IEEE 754 big-endian 32-bit float. */
export const f32be = vt<number, number>('f32be', 4, getF32BE, setF32BE, checkFloat);
/** An IEEE 754 little-endian 64-bit float. */
export const f64le = vt<number, number>('f64le', 8, getF64LE, setF64LE, checkFloat);
/** An IEEE 754 big-endian 64-bit float. */
export const f64be = vt<number, number>('f64be', 8, getF64BE, setF64BE, checkFloat);
