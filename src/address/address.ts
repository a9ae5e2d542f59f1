/**
 * Addresses and lengths as plain numbers, told apart at compile time.
 *
 * Guest physical addresses are at most 52 bits wide on real hardware, so a JS number (exact to
 * 2^53) holds every one of them; BigInt would cost 10x on the hot path. The brands make a
 * {@link GuestAddress} and a {@link MemoryRegionAddress} distinct types that do not mix, while
 * costing nothing at run time.
 */
import { hex } from '../errors.js';
import { AddressError } from './errors.js';

declare const brand: unique symbol;

/** A guest physical address. Create with {@link GuestAddress}. */
export type GuestAddress = number & {
  /** @internal Compile-time brand only; no such property exists. */
  readonly [brand]: 'GuestAddress';
};

/** An offset from the start of one memory region. Create with {@link MemoryRegionAddress}. */
export type MemoryRegionAddress = number & {
  /** @internal Compile-time brand only; no such property exists. */
  readonly [brand]: 'MemoryRegionAddress';
};

/** Either kind of branded address: what the checked arithmetic below accepts. */
export type Address = GuestAddress | MemoryRegionAddress;

/**
 * Validates `value` as a guest physical address (a non-negative safe integer) and brands it.
 *
 * @throws {AddressError} `ERR_INVALID_ADDRESS` when `value` is not a non-negative safe integer.
 * @example
 * const a = GuestAddress(0x1000); // => 0x1000
 */
export function GuestAddress(value: number): GuestAddress {
  return validateIndex(value, 'address') as GuestAddress;
}

/**
 * Validates `value` as an offset into a region (a non-negative safe integer) and brands it.
 *
 * @throws {AddressError} `ERR_INVALID_ADDRESS` when `value` is not a non-negative safe integer.
 */
export function MemoryRegionAddress(value: number): MemoryRegionAddress {
  return validateIndex(value, 'address') as MemoryRegionAddress;
}

/** True when `value` is a number usable as an address, offset or length. */
export function isIndex(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/**
 * Returns `value` when it is a non-negative safe integer, else throws.
 *
 * Every public entry point that takes an address, offset or length funnels through this (or an
 * equivalent inline test on a hot path), so that `1.5`, `-1`, `NaN` or `2 ** 60` never reach a
 * typed-array index, where JS would silently truncate or wrap them.
 *
 * @param name - The argument's name, for the message.
 * @throws {AddressError} `ERR_INVALID_ADDRESS`
 */
export function validateIndex(value: unknown, name: string): number {
  if (isIndex(value)) return value;
  throw new AddressError(
    'ERR_INVALID_ADDRESS',
    `${name} must be a non-negative safe integer, got ${describe(value)}`,
  );
}

/**
 * `a + n`, checked: throws rather than leave the range of safe integers or go below zero.
 *
 * @throws {AddressError} `ERR_GUEST_ADDRESS_OVERFLOW`
 */
export function checkedAdd<A extends number>(a: A, n: number): A {
  const r = validateIndex(a, 'address') + validateSigned(n, 'n');
  if (r < 0 || r > Number.MAX_SAFE_INTEGER) {
    throw new AddressError(
      'ERR_GUEST_ADDRESS_OVERFLOW',
      `${hex(a)} + ${n} is outside [0, 2^53)`,
      { address: a, length: n },
    );
  }
  return r as A;
}

/**
 * `a - n`, checked.
 *
 * @throws {AddressError} `ERR_GUEST_ADDRESS_OVERFLOW` when the result would be negative.
 */
export function checkedSub<A extends number>(a: A, n: number): A {
  return checkedAdd(a, -validateIndex(n, 'n'));
}

/**
 * How far `a` lies above `base` (`a - base`), checked.
 *
 * @throws {AddressError} `ERR_GUEST_ADDRESS_OVERFLOW` when `a < base`.
 */
export function offsetFrom<A extends number>(a: A, base: A): number {
  validateIndex(a, 'address');
  validateIndex(base, 'base');
  if (a < base) {
    throw new AddressError(
      'ERR_GUEST_ADDRESS_OVERFLOW',
      `${hex(a)} lies below its base ${hex(base)}`,
      { address: a },
    );
  }
  return a - base;
}

/**
 * The exclusive end of `[start, start + length)`, checked.
 *
 * @throws {AddressError} `ERR_GUEST_ADDRESS_OVERFLOW` when the end is not a safe integer.
 */
export function rangeEnd<A extends number>(start: A, length: number): A {
  return checkedAdd(start, validateIndex(length, 'length'));
}

/**
 * Rounds `a` up to a multiple of `alignment` (a power of two), checked.
 *
 * @throws {AddressError} `ERR_INVALID_ALIGNMENT`, `ERR_GUEST_ADDRESS_OVERFLOW`
 */
export function alignUp<A extends number>(a: A, alignment: number): A {
  validateIndex(a, 'address');
  validateAlignment(alignment);
  const r = Math.ceil(a / alignment) * alignment;
  if (r > Number.MAX_SAFE_INTEGER) {
    throw new AddressError(
      'ERR_GUEST_ADDRESS_OVERFLOW',
      `aligning ${hex(a)} up to ${hex(alignment)} leaves the safe integer range`,
      { address: a },
    );
  }
  return r as A;
}

/**
 * Rounds `a` down to a multiple of `alignment` (a power of two).
 *
 * @throws {AddressError} `ERR_INVALID_ALIGNMENT`
 */
export function alignDown<A extends number>(a: A, alignment: number): A {
  validateIndex(a, 'address');
  validateAlignment(alignment);
  // Exact for every safe integer: `%` on doubles is exact, unlike `&`, which truncates to 32 bits.
  return (a - (a % alignment)) as A;
}

/** True when `a` is a multiple of `alignment` (a power of two). */
export function isAligned(a: number, alignment: number): boolean {
  validateAlignment(alignment);
  return a % alignment === 0;
}

function validateAlignment(alignment: number): void {
  if (!isIndex(alignment) || alignment === 0 || 2 ** Math.round(Math.log2(alignment)) !== alignment) {
    throw new AddressError(
      'ERR_INVALID_ALIGNMENT',
      `alignment must be a power of two, got ${describe(alignment)}`,
    );
  }
}

function validateSigned(value: number, name: string): number {
  if (Number.isSafeInteger(value)) return value;
  throw new AddressError('ERR_INVALID_ADDRESS', `${name} must be a safe integer, got ${describe(value)}`);
}

/** A short, safe rendering of an untrusted argument for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'number') return Number.isInteger(value) ? hex(value) : String(value);
  if (typeof value === 'bigint') return `${hex(value)}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return value === null ? 'null' : typeof value;
}
