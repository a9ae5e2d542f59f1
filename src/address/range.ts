import { hex } from '../errors.js';
import { rangeEnd, validateIndex } from './address.js';
import { AddressError } from './errors.js';

/**
 * A half-open address range `[start, end)`. Immutable; empty when `start === end`.
 *
 * @typeParam A - The address kind, e.g. {@link GuestAddress}.
 */
export class AddressRange<A extends number = number> {
  /** The first address in the range. */
  readonly start: A;
  /** The first address past the range. */
  readonly end: A;

  /**
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for bad bounds, `ERR_GUEST_ADDRESS_OVERFLOW`
   * when `end < start`.
   */
  constructor(start: A, end: A) {
    validateIndex(start, 'start');
    validateIndex(end, 'end');
    if (end < start) {
      throw new AddressError('ERR_GUEST_ADDRESS_OVERFLOW', `range end ${hex(end)} lies below its start ${hex(start)}`, {
        address: start,
      });
    }
    this.start = start;
    this.end = end;
  }

  /**
   * `[start, start + length)`.
   *
   * @throws {AddressError} `ERR_GUEST_ADDRESS_OVERFLOW` when the end is not a safe integer.
   */
  static fromLength<A extends number>(start: A, length: number): AddressRange<A> {
    return new AddressRange(start, rangeEnd(start, length));
  }

  /** `end - start`. */
  get length(): number {
    return this.end - this.start;
  }

  /** True when the range holds no address. */
  get isEmpty(): boolean {
    return this.end === this.start;
  }

  /** True when `addr` lies inside the range. */
  contains(addr: A): boolean {
    return addr >= this.start && addr < this.end;
  }

  /** True when all of `other` lies inside this range (an empty `other` is inside when its start is). */
  containsRange(other: AddressRange<A>): boolean {
    return other.start >= this.start && other.end <= this.end;
  }

  /** True when the two ranges share at least one address. */
  overlaps(other: AddressRange<A>): boolean {
    return this.start < other.end && other.start < this.end && !this.isEmpty && !other.isEmpty;
  }

  /** The addresses both ranges share, or `undefined` when they share none. */
  intersection(other: AddressRange<A>): AddressRange<A> | undefined {
    if (!this.overlaps(other)) return undefined;
    return new AddressRange(Math.max(this.start, other.start) as A, Math.min(this.end, other.end) as A);
  }

  /** `[start, end)` in hex. */
  toString(): string {
    return `[${hex(this.start)}, ${hex(this.end)})`;
  }
}
