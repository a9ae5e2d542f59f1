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
  name: string;
  start: GuestAddress;
  length: number;
  /** Higher wins where regions overlap; equal priorities must not overlap. */
  priority?: number;
}

/** A RAM, ROM or device memory region: `length` bytes of `backing` from `backingOffset`. */
export interface BackedRegionSpec extends RegionSpec {
  backing: MemoryBacking;
  /** Default 0. */
  backingOffset?: number;
  /** Default: read-write (ROM: read-only). */
  visibility?: Visibility;
}

/** A ROM region. */
export interface RomRegionSpec extends BackedRegionSpec {
  onWrite?: RomWriteHandler;
}

/** An MMIO region. */
export interface MmioRegionSpec extends RegionSpec {
  handler: MmioHandler;
  /** The access sizes the handler takes (default 1, 2, 4); others are split into these. */
  accessSizes?: readonly AccessSize[];
  /** Default: mapped. */
  mapped?: boolean;
}

/** An alias: `length` bytes of `target` from `offset`, shown at `start`. */
export interface AliasRegionSpec extends RegionSpec {
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
  readonly name: string;
  readonly kind: RegionKind;
  readonly start: GuestAddress;
  readonly end: GuestAddress;
  readonly length: number;
  readonly priority: number;
  /** RAM, ROM, device memory: the backing and where the region starts in it. */
  readonly backing: MemoryBacking | undefined;
  readonly backingOffset: number;
  /** MMIO: the handler and the access sizes it takes. */
  readonly handler: MmioHandler | undefined;
  readonly accessSizes: readonly AccessSize[];
  /** ROM: where guest writes go. */
  readonly onWrite: RomWriteHandler | undefined;
  /** Alias: the region shown, and the offset in it of the alias's first byte. */
  readonly target: Region | undefined;
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

  toString(): string {
    return `${this.kind} region ${this.name} ${this.range}`;
  }
}
