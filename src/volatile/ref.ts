import { validateIndex } from '../address/address.js';
import type { ValueType } from '../bytes/values.js';
import { VolatileMemoryError } from '../bytes/errors.js';
import type { VolatileSlice } from './slice.js';

/**
 * One typed value in memory, read and written with a single access when naturally aligned.
 * Stores mark the dirty bitmap of the memory it came from.
 */
export class VolatileRef<T, W = T> {
  readonly #slice: VolatileSlice;
  /** The type of the value. */
  readonly type: ValueType<T, W>;

  /** @internal Use {@link VolatileSlice.getRef}. */
  constructor(slice: VolatileSlice, type: ValueType<T, W>) {
    this.#slice = slice;
    this.type = type;
  }

  /** Reads the value. */
  load(): T {
    return this.#slice.readValue(this.type, 0);
  }

  /** @throws {VolatileMemoryError} `ERR_VALUE_OUT_OF_RANGE` for a value the type cannot hold. */
  store(value: W): void {
    this.#slice.writeValue(this.type, 0, value);
  }

  /** The slice the value occupies (`type.size` bytes, same memory and dirty bitmap). */
  toSlice(): VolatileSlice {
    return this.#slice;
  }
}

/** `length` consecutive typed values in memory. */
export class VolatileArrayRef<T, W = T> {
  readonly #slice: VolatileSlice;
  /** The type of each value. */
  readonly type: ValueType<T, W>;
  /** How many values there are. */
  readonly length: number;

  /** @internal Use {@link VolatileSlice.getArrayRef}. */
  constructor(slice: VolatileSlice, type: ValueType<T, W>, length: number) {
    this.#slice = slice;
    this.type = type;
    this.length = length;
  }

  /** @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS` unless `0 <= index < length`. */
  get(index: number): T {
    return this.#slice.readValue(this.type, this.#offsetOf(index));
  }

  /** @throws {VolatileMemoryError} `ERR_OUT_OF_BOUNDS`, `ERR_VALUE_OUT_OF_RANGE` */
  set(index: number, value: W): void {
    this.#slice.writeValue(this.type, this.#offsetOf(index), value);
  }

  /** All values, in order. */
  toArray(): T[] {
    const out = new Array<T>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.#slice.readValue(this.type, i * this.type.size);
    return out;
  }

  /**
   * Stores `values` from index `start` on. Every value is checked first, so a bad one (or too
   * many) changes nothing.
   */
  copyFrom(values: ArrayLike<W>, start = 0): void {
    validateIndex(start, 'start');
    if (start + values.length > this.length) {
      throw new VolatileMemoryError('ERR_OUT_OF_BOUNDS', `${values.length} values from index ${start} exceed length ${this.length}`, {
        address: start,
        length: values.length,
      });
    }
    for (let i = 0; i < values.length; i++) this.type.check(values[i]);
    for (let i = 0; i < values.length; i++) this.set(start + i, values[i]);
  }

  /** The slice the values occupy (`length * type.size` bytes, same memory and dirty bitmap). */
  toSlice(): VolatileSlice {
    return this.#slice;
  }

  #offsetOf(index: number): number {
    validateIndex(index, 'index');
    if (index >= this.length) {
      throw new VolatileMemoryError('ERR_OUT_OF_BOUNDS', `index ${index} is outside [0, ${this.length})`, { address: index });
    }
    return index * this.type.size;
  }
}
