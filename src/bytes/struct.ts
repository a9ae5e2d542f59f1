import type { BackingViews } from '../backend/views.js';
import { VolatileMemoryError } from './errors.js';
import type { InputOf, ValueOf, ValueType } from './values.js';

/** The fields of a struct: names mapped to value types, in memory order. */
export type StructFields = Record<string, ValueType<any, any>>;

/** The plain object a struct reads as. */
export type StructValue<F extends StructFields> = { [K in keyof F]: ValueOf<F[K]> };
/** The plain object a struct accepts when written. */
export type StructInput<F extends StructFields> = { [K in keyof F]: InputOf<F[K]> };

/** One field's place in a {@link StructLayout}. */
export interface StructField {
  /** The field's name in the struct's values. */
  readonly name: string;
  /** How the field's bytes are read and written. */
  readonly type: ValueType<any, any>;
  /** Bytes from the start of the struct. */
  readonly offset: number;
}

/**
 * A fixed-size structure in guest memory, read and written as a plain object with one bounds
 * check for the whole struct. Fields are packed in declaration order (no implicit padding, as
 * virtio and most device ABIs lay them out); name a padding field explicitly when there is one.
 *
 * @example
 * const VirtqDesc = structLayout('virtq_desc', { addr: u64leNumber, len: u32le, flags: u16le, next: u16le });
 * const mem = GuestMemory.fromRanges([[GuestAddress(0), 0x2000]]);
 * mem.writeStruct(VirtqDesc, GuestAddress(0x1000), { addr: 0x4000, len: 512, flags: 1, next: 2 });
 * mem.readStruct(VirtqDesc, GuestAddress(0x1000)); // => { addr: 0x4000, len: 512, flags: 1, next: 2 }
 */
export class StructLayout<F extends StructFields = StructFields> {
  /** The struct's name, for messages. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** The fields in layout order. */
  readonly fields: readonly StructField[];
  /** Values checked before any byte is written, so an invalid field changes nothing. */
  readonly #pending: unknown[];

  constructor(name: string, fields: F) {
    const list: StructField[] = [];
    let offset = 0;
    for (const [fieldName, type] of Object.entries(fields)) {
      list.push(Object.freeze({ name: fieldName, type, offset }));
      offset += type.size;
    }
    if (list.length === 0) {
      throw new VolatileMemoryError('ERR_INVALID_LAYOUT', `struct ${name} has no fields`);
    }
    this.name = name;
    this.size = offset;
    this.fields = Object.freeze(list);
    this.#pending = new Array(list.length);
  }

  /** @internal Decodes the struct at absolute offset `a` of `v`. */
  decode(v: BackingViews, a: number): StructValue<F> {
    const out: Record<string, unknown> = {};
    for (const f of this.fields) out[f.name] = f.type.get(v, a + f.offset);
    return out as StructValue<F>;
  }

  /** @internal Checks every field of `value`; throws before anything is written. */
  check(value: StructInput<F>): void {
    const rec = value as Record<string, unknown>;
    this.fields.forEach((f, i) => {
      const x = rec[f.name];
      try {
        f.type.check(x);
      } catch (err) {
        throw new VolatileMemoryError('ERR_VALUE_OUT_OF_RANGE', `${this.name}.${f.name}: ${(err as Error).message}`, { cause: err });
      }
      this.#pending[i] = x;
    });
  }

  /** @internal Encodes the values last passed to {@link StructLayout.check} at `a` of `v`. */
  encodeChecked(v: BackingViews, a: number): void {
    const fields = this.fields;
    for (let i = 0; i < fields.length; i++) fields[i].type.set(v, a + fields[i].offset, this.#pending[i]);
    this.#pending.fill(undefined);
  }
}

/** Declares a packed struct layout; see {@link StructLayout}. */
export function structLayout<F extends StructFields>(name: string, fields: F): StructLayout<F> {
  return new StructLayout(name, fields);
}
