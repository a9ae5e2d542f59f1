import { type GuestAddress, validateIndex } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import { hex } from '../errors.js';
import type { MemoryBacking } from './backing.js';
import { MemoryManagerError } from './errors.js';

/**
 * What a region is. RAM is backed and read-write; ROM is backed and read-only to the guest, whose
 * writes go to an optional handler; device memory is backed memory a device maps into the guest
 * and can unmap; MMIO is a handler; an alias shows part of another region at another address.
 */
export type RegionKind = 'ram' | 'rom' | 'device' | 'mmio' | 'alias';

/**
 * How a region shows in the guest (OpenVMM's RamVisibility). An unmapped region lets lower ones
 * show through; for MMIO and aliases `'read-write'` just means mapped.
 */
export type Visibility = 'unmapped' | 'read-only' | 'read-write';

/** The size of one guest access, in bytes. Values are numbers, so 8-byte accesses are two. */
export type AccessSize = 1 | 2 | 4;

/** The callbacks of an MMIO region; `offset` counts from the region's start. */
export interface MmioHandler {
  /** Returns the `size`-byte value at `offset` (an unsigned integer below 2^(8·size)). */
  read(offset: number, size: AccessSize): number;
  /** Takes the `size`-byte `value` the guest wrote at `offset`. */
  write(offset: number, size: AccessSize, value: number): void;
}

/** Where guest writes to a ROM go (offset from the ROM's start); without one they are dropped. */
export type RomWriteHandler = (offset: number, size: AccessSize, value: number) => void;

/** Default priorities: RAM above everything (OpenVMM's RAM_PRIORITY), the rest at 0. */
export const RAM_PRIORITY = 255;
/** Default priority of ROM, device memory and MMIO (OpenVMM's DEVICE_PRIORITY). */
export const DEVICE_PRIORITY = 0;

/** What every region description has. */
export interface RegionSpec {
  /** What dumps and errors call it. */
  name: string;
  /** The guest address of its first byte. */
  start: GuestAddress;
  /** Its length in bytes (not 0). */
  length: number;
  /** Higher wins where regions overlap; equal priorities must not overlap. */
  priority?: number;
}

/** A RAM, ROM or device memory region: `length` bytes of `backing` from `backingOffset`. */
export interface BackedRegionSpec extends RegionSpec {
  /** The memory behind it. */
  backing: MemoryBacking;
  /** Default 0. */
  backingOffset?: number;
  /** Default: read-write (ROM: read-only). */
  visibility?: Visibility;
}

/** A ROM region. */
export interface RomRegionSpec extends BackedRegionSpec {
  /** Where guest writes go (default: nowhere). */
  onWrite?: RomWriteHandler;
}

/** An MMIO region. */
export interface MmioRegionSpec extends RegionSpec {
  /** Serves the guest's accesses. */
  handler: MmioHandler;
  /** The access sizes the handler takes (default 1, 2, 4); others are split into these. */
  accessSizes?: readonly AccessSize[];
  /** Default: mapped. */
  mapped?: boolean;
}

/** An alias: `length` bytes of `target` from `offset`, shown at `start`. */
export interface AliasRegionSpec extends RegionSpec {
  /** The region shown (not an alias). */
  target: Region;
  /** Default 0. */
  offset?: number;
  /** Default: mapped. */
  mapped?: boolean;
}

/**
 * One region of a {@link MemoryManager}: a name, a guest range, a priority and a kind with what
 * belongs to it. Made by the manager's `add*` methods; only the manager changes its visibility.
 */
export class Region {
  /** What dumps and errors call it. */
  readonly name: string;
  /** What it is. */
  readonly kind: RegionKind;
  /** The guest address of its first byte. */
  readonly start: GuestAddress;
  /** The exclusive end, `start + length`. */
  readonly end: GuestAddress;
  /** Bytes of guest address space it claims. */
  readonly length: number;
  /** Higher wins where regions overlap. */
  readonly priority: number;
  /** RAM, ROM, device memory: the backing. */
  readonly backing: MemoryBacking | undefined;
  /** RAM, ROM, device memory: where the region starts in its backing (0 for other kinds). */
  readonly backingOffset: number;
  /** MMIO: the handler. */
  readonly handler: MmioHandler | undefined;
  /** MMIO: the access sizes the handler takes, ascending (empty for other kinds). */
  readonly accessSizes: readonly AccessSize[];
  /** ROM: where guest writes go. */
  readonly onWrite: RomWriteHandler | undefined;
  /** Alias: the region shown. */
  readonly target: Region | undefined;
  /** Alias: the offset in the target of the alias's first byte (0 for other kinds). */
  readonly targetOffset: number;
  /** @internal Changed only by the manager that holds the region. */
  _visibility: Visibility;
  /** @internal Add order: the tie-break that keeps dumps stable. */
  readonly _seq: number;

  /** @internal Use the manager's `add*` methods. */
  constructor(kind: RegionKind, spec: RegionSpec, fields: Partial<Region>, visibility: Visibility, seq: number) {
    if (typeof spec !== 'object' || spec === null || typeof spec.name !== 'string') {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'a region needs a name (a string)');
    }
    const start = validateIndex(spec.start, 'start');
    const length = validateIndex(spec.length, 'length');
    if (length === 0 || start + length > Number.MAX_SAFE_INTEGER) {
      throw new MemoryManagerError('ERR_INVALID_REGION', `region ${spec.name} at ${hex(start)} of ${hex(length)} bytes is empty or ends beyond 2^53`, {
        address: start,
        length,
      });
    }
    const priority = spec.priority ?? fields.priority ?? (kind === 'ram' ? RAM_PRIORITY : DEVICE_PRIORITY);
    if (!Number.isSafeInteger(priority)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', `the priority of region ${spec.name} must be a safe integer`);
    }
    this.name = spec.name;
    this.kind = kind;
    this.start = start as GuestAddress;
    this.length = length;
    this.end = (start + length) as GuestAddress;
    this.priority = priority;
    this.backing = fields.backing;
    this.backingOffset = fields.backingOffset ?? 0;
    this.handler = fields.handler;
    this.accessSizes = Object.freeze([...(fields.accessSizes ?? [])]);
    this.onWrite = fields.onWrite;
    this.target = fields.target;
    this.targetOffset = fields.targetOffset ?? 0;
    this._visibility = visibility;
    this._seq = seq;
  }

  /** The guest range the region claims. */
  get range(): AddressRange<GuestAddress> {
    return new AddressRange(this.start, this.end);
  }

  /** How it shows now; an alias shows only while its target shows too. */
  get visibility(): Visibility {
    return this._visibility;
  }

  /** True for RAM, ROM and device memory, whose bytes live in a backing. */
  get backed(): boolean {
    return this.backing !== undefined;
  }

  /** E.g. `ram region ram-0 [0x100000, 0x400000)`. */
  toString(): string {
    return `${this.kind} region ${this.name} ${this.range}`;
  }
}
