import type { GuestAddress } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import type { MemoryBackend } from '../backend/backend.js';
import type { Bitmap } from '../bitmap/bitmap.js';
import { hex } from '../errors.js';
import { MemoryBacking } from './backing.js';
import { type UnmappedPolicy, validatePolicy } from './dispatch.js';
import { MemoryManagerError } from './errors.js';
import { MemoryManager } from './manager.js';
import type { Region } from './regions.js';

/** A guest address space layout: RAM ranges and the MMIO gaps between them, sorted, disjoint. */
export interface MemoryLayout {
  /** The RAM ranges, ascending; they lie one after another in the backing. */
  readonly ram: readonly AddressRange<GuestAddress>[];
  /** The gaps left for MMIO (a PCI hole...): they count for the alias map's fit. */
  readonly mmio?: readonly AddressRange<GuestAddress>[];
}

/** What a {@link BackingAllocator} is asked to honour. */
export interface BackingAllocatorOptions {
  /** Populate the pages now. */
  readonly prefetch: boolean;
  /** Lock the pages in memory. */
  readonly pin: boolean;
  /**
   * Back RAM with huge pages of this size ({@link GuestMemoryBuilder.hugePages}), or `undefined`
   * for normal pages. `size` is then a multiple of it.
   */
  readonly hugePageSize: number | undefined;
}

/**
 * Makes the backing for `size` bytes of RAM, honouring prefetch, pin and huge pages as its memory
 * kind can. With `guestmem/mmap` (hugetlbfs pages of the system's default huge page size):
 * `(size, o) => MmapBackend.memfd(size, { populate: o.prefetch, pin: o.pin, hugepages: o.hugePageSize === undefined ? undefined : 'hugetlb' }).chunks()`.
 */
export type BackingAllocator = (size: number, options: BackingAllocatorOptions) => MemoryBacking | MemoryBackend | readonly MemoryBackend[];

/** What {@link GuestMemoryBuilder.build} makes. */
export interface BuiltMemory {
  /** The manager holding the RAM (and alias) regions; add ROM, devices and MMIO to it. */
  readonly manager: MemoryManager;
  /** The RAM backing: hand it to {@link GuestMemoryBuilder.existingBacking} to rebuild the same memory. */
  readonly backing: MemoryBacking;
  /** The RAM regions, in address order (with x86 legacy support, the split ones). */
  readonly ram: readonly Region[];
  /** The alias map's regions, one per RAM region, or none. */
  readonly aliases: readonly Region[];
  /** The layout it was built from. */
  readonly layout: MemoryLayout;
  /** Where the alias map starts, if there is one. */
  readonly aliasMapOffset: number | undefined;
  /** Asked of the builder; a hypervisor mapping the memory pins it. */
  readonly pinMappings: boolean;
}

/**
 * Where x86 low RAM is split (OpenVMM's range_starts, without the end of the first RAM range):
 * conventional memory, the VGA window 0xA0000-0xBFFFF, the 16 KiB PAM ranges 0xC0000-0xEFFFF and
 * the 64 KiB BIOS range 0xF0000-0xFFFFF, then the rest from 1 MiB.
 */
export const X86_LEGACY_SPLIT: readonly number[] = Object.freeze([
  0, 0xa0000, 0xc0000, 0xc4000, 0xc8000, 0xcc000, 0xd0000, 0xd4000, 0xd8000, 0xdc000, 0xe0000, 0xe4000, 0xe8000,
  0xec000, 0xf0000, 0x100000,
]);

/**
 * Builds a {@link MemoryManager} from a layout over one RAM backing, as OpenVMM's
 * GuestMemoryBuilder does: RAM ranges lie one after another in the backing; options add x86
 * legacy splitting and an alias map.
 *
 * @example
 * const { manager, ram } = new GuestMemoryBuilder().x86LegacySupport(true).build({
 *   ram: [AddressRange.fromLength(GuestAddress(0), 0x400000), AddressRange.fromLength(GuestAddress(2 ** 32), 0x100000)],
 *   mmio: [AddressRange.fromLength(GuestAddress(0xc000_0000), 0x4000_0000)],
 * });
 * ram.length; // => 17
 * manager.setVisibility(AddressRange.fromLength(GuestAddress(0xa0000), 0x20000), 'unmapped');
 * manager.read(GuestAddress(0xb8000), 2); // => 0xffff
 */
export class GuestMemoryBuilder {
  #existing: MemoryBacking | undefined;
  #allocator: 'heap' | 'shared' | BackingAllocator = 'heap';
  #aliasMap: number | undefined;
  #prefetch = false;
  #pin = false;
  #x86 = false;
  #unmapped: UnmappedPolicy = 'ignore';
  #bitmap: Bitmap | undefined;
  #hugePageSize: number | undefined;

  /** Uses this backing instead of allocating one: the same memory, with its contents. */
  existingBacking(backing: MemoryBacking | undefined): this {
    if (backing !== undefined && !(backing instanceof MemoryBacking)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'existingBacking takes a MemoryBacking');
    }
    this.#existing = backing;
    return this;
  }

  /** Allocates RAM on the heap (default), in SharedArrayBuffers, or with `allocator`. */
  allocator(allocator: 'heap' | 'shared' | BackingAllocator): this {
    if (allocator !== 'heap' && allocator !== 'shared' && typeof allocator !== 'function') {
      throw new MemoryManagerError('ERR_INVALID_ARG', "allocator must be 'heap', 'shared' or a function");
    }
    this.#allocator = allocator;
    return this;
  }

  /** Mirrors all RAM at `offset` (OpenVMM's VTL0 alias map), which must lie above the layout. */
  aliasMap(offset: number | undefined): this {
    if (offset !== undefined && !(Number.isSafeInteger(offset) && offset >= 0)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', `the alias map offset must be a non-negative safe integer, got ${offset}`);
    }
    this.#aliasMap = offset;
    return this;
  }

  /** Asks the allocator to lock RAM in memory (device assignment needs every page present). */
  pinMappings(enable: boolean): this {
    this.#pin = enable === true;
    return this;
  }

  /** Asks the allocator to populate RAM up front: fewer faults at boot, all of RAM committed. */
  prefetchRam(enable: boolean): this {
    this.#prefetch = enable === true;
    return this;
  }

  /**
   * Splits low RAM at {@link X86_LEGACY_SPLIT} into separately controllable regions (the VGA
   * window, the PAM ranges). The first RAM range must then start at 0 and reach 1 MiB.
   */
  x86LegacySupport(enable: boolean): this {
    this.#x86 = enable === true;
    return this;
  }

  /**
   * Backs RAM with huge pages of `size` bytes (2 MiB and 1 GiB on x86-64), as OpenVMM's
   * `hugepages`; `undefined` (the default) for normal pages. The allocator is asked for them
   * ({@link BackingAllocatorOptions.hugePageSize}). {@link build} checks that the size is a power
   * of two from 4 KiB to 1 GiB, that every RAM range starts and ends on a huge page, and refuses huge
   * pages with an existing backing, with heap or shared RAM (JS buffers have no huge pages) and
   * with x86 legacy support (its 16 KiB ranges cannot be mapped with huge pages).
   */
  hugePages(size: number | undefined): this {
    if (size !== undefined && !(Number.isSafeInteger(size) && size > 0)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', `the huge page size must be a positive safe integer, got ${size}`);
    }
    this.#hugePageSize = size;
    return this;
  }

  /**
   * Tracks writes to RAM in `bitmap`, which covers the whole backing (the sum of the RAM ranges)
   * at backing offsets, whichever way the backing is made: allocated here, by an allocator, or
   * existing (which must then track into this same bitmap, or none).
   */
  dirtyBitmap(bitmap: Bitmap | undefined): this {
    this.#bitmap = bitmap;
    return this;
  }

  /** The manager's policy for accesses to nothing (default `'ignore'`). */
  unmapped(policy: UnmappedPolicy): this {
    validatePolicy(policy);
    this.#unmapped = policy;
    return this;
  }

  /**
   * Checks the layout, then allocates (or adopts) the backing and makes the regions.
   *
   * @throws {MemoryManagerError} `ERR_INVALID_LAYOUT`, `ERR_LEGACY_RAM_LAYOUT`,
   *   `ERR_ALIAS_MAP_WONT_FIT`, `ERR_HUGE_PAGE_SIZE`, `ERR_HUGE_PAGE_ALIGNMENT`,
   *   `ERR_HUGE_PAGES_UNSUPPORTED` (all checked before anything is allocated), `ERR_RAM_TOO_LARGE`,
   *   `ERR_ALLOCATION_FAILED`, `ERR_INVALID_ARG` (a backing that tracks into another bitmap than
   *   {@link dirtyBitmap}'s).
   */
  build(layout: MemoryLayout): BuiltMemory {
    const ram = rangesOf(layout?.ram);
    const mmio = rangesOf(layout?.mmio);
    checkLayout(ram, mmio);
    const maxAddr = Math.max(...ram.map((r) => r.end), ...mmio.map((r) => r.end));
    let ranges = ram.map((range, i) => ({ range, name: `ram-${i}` }));
    if (this.#x86) {
      const first = ram[0];
      if (first.start !== 0 || first.end < 0x100000) {
        throw new MemoryManagerError('ERR_LEGACY_RAM_LAYOUT', `x86 legacy support needs RAM from 0 covering at least 1 MiB, not ${first}`, {
          address: first.start,
          length: first.length,
        });
      }
      const starts = [...X86_LEGACY_SPLIT, first.end];
      const split = starts.slice(0, -1).map((s, i) => ({
        range: new AddressRange(s as GuestAddress, starts[i + 1] as GuestAddress),
        name: legacyName(s),
      }));
      // RAM of exactly 1 MiB leaves nothing above the split: no empty region.
      ranges = [...split.filter((r) => !r.range.isEmpty), ...ranges.slice(1)];
    }
    const aliasOffset = this.#aliasMap;
    if (aliasOffset !== undefined && (aliasOffset < maxAddr || aliasOffset + maxAddr > Number.MAX_SAFE_INTEGER)) {
      throw new MemoryManagerError('ERR_ALIAS_MAP_WONT_FIT', `the alias map at ${hex(aliasOffset)} does not fit above the layout, which ends at ${hex(maxAddr)}`, {
        address: aliasOffset,
        length: maxAddr,
      });
    }
    const ramSize = ram.reduce((n, r) => n + r.length, 0);
    if (this.#hugePageSize !== undefined) this.#checkHugePages(this.#hugePageSize, ram, ramSize);
    const backing = this.#backing(ramSize);
    const manager = new MemoryManager({ unmapped: this.#unmapped });
    let offset = 0;
    const regions = ranges.map(({ range, name }) => {
      const region = manager.addRam({ name, start: range.start, length: range.length, backing, backingOffset: offset });
      offset += range.length;
      return region;
    });
    const aliases =
      aliasOffset === undefined
        ? []
        : regions.map((target) =>
            manager.addAlias({ name: `${target.name}-alias`, start: (aliasOffset + target.start) as GuestAddress, length: target.length, target }),
          );
    return Object.freeze({
      manager,
      backing,
      ram: Object.freeze(regions),
      aliases: Object.freeze(aliases),
      layout: Object.freeze({ ram: Object.freeze(ram), mmio: Object.freeze(mmio) }),
      aliasMapOffset: aliasOffset,
      pinMappings: this.#pin,
    });
  }

  /** OpenVMM's checks of huge pages: a sane size, RAM on huge page boundaries, and a backing that can have them. */
  #checkHugePages(size: number, ram: readonly AddressRange<GuestAddress>[], ramSize: number): void {
    if (size < MIN_PAGE_SIZE || (size & (size - 1)) !== 0 || size > 2 ** 30) {
      throw new MemoryManagerError('ERR_HUGE_PAGE_SIZE', `huge pages of ${hex(size)} bytes: the size must be a power of two from 4 KiB to 1 GiB`, {
        length: size,
      });
    }
    const unsupported = (why: string) => new MemoryManagerError('ERR_HUGE_PAGES_UNSUPPORTED', `huge pages cannot be used with ${why}`);
    if (this.#existing !== undefined) throw unsupported('an existing backing (it was made with the pages it has)');
    if (this.#allocator === 'heap' || this.#allocator === 'shared') throw unsupported(`${this.#allocator} RAM: give an allocator (guestmem/mmap)`);
    if (this.#x86) throw unsupported('x86 legacy support: its 16 KiB ranges are smaller than a huge page');
    if (ramSize % size !== 0) {
      throw new MemoryManagerError('ERR_HUGE_PAGE_ALIGNMENT', `${hex(ramSize)} bytes of RAM are not a multiple of the ${hex(size)}-byte huge page`, {
        length: ramSize,
        expected: size,
      });
    }
    for (const r of ram) {
      if (r.start % size !== 0 || r.length % size !== 0) {
        throw new MemoryManagerError('ERR_HUGE_PAGE_ALIGNMENT', `RAM range ${r} does not start and end on ${hex(size)}-byte huge pages`, {
          address: r.start,
          length: r.length,
          expected: size,
        });
      }
    }
  }

  #backing(ramSize: number): MemoryBacking {
    let backing: MemoryBacking;
    if (this.#existing !== undefined) backing = this.#keepBitmap(this.#existing, 'the existing backing');
    else if (this.#allocator === 'heap' || this.#allocator === 'shared') {
      backing = MemoryBacking.allocate(ramSize, { shared: this.#allocator === 'shared', bitmap: this.#bitmap });
    }
    else {
      let made: ReturnType<BackingAllocator>;
      try {
        made = this.#allocator(ramSize, { prefetch: this.#prefetch, pin: this.#pin, hugePageSize: this.#hugePageSize });
      } catch (err) {
        throw new MemoryManagerError('ERR_ALLOCATION_FAILED', `the allocator could not make ${hex(ramSize)} bytes of RAM`, { length: ramSize, cause: err });
      }
      backing = made instanceof MemoryBacking ? this.#keepBitmap(made, "the allocator's backing") : new MemoryBacking(made, { bitmap: this.#bitmap });
    }
    if (ramSize > backing.size) {
      throw new MemoryManagerError('ERR_RAM_TOO_LARGE', `${hex(ramSize)} bytes of RAM do not fit a backing of ${hex(backing.size)}`, {
        length: ramSize,
        expected: backing.size,
      });
    }
    return backing;
  }

  /** `backing` tracking into {@link dirtyBitmap}'s bitmap, if one was given: the same backing, or one over its chunks. */
  #keepBitmap(backing: MemoryBacking, what: string): MemoryBacking {
    const bitmap = this.#bitmap;
    if (bitmap === undefined || backing.bitmap === bitmap) return backing;
    if (backing.bitmap !== undefined) {
      throw new MemoryManagerError('ERR_INVALID_ARG', `${what} tracks writes in its own bitmap, not the one given to dirtyBitmap()`);
    }
    return new MemoryBacking(backing.chunks, { bitmap });
  }
}

/** The smallest huge page: the normal page size. */
const MIN_PAGE_SIZE = 4096;

const bad = (why: string, r?: AddressRange) =>
  new MemoryManagerError('ERR_INVALID_LAYOUT', `invalid memory layout: ${why}`, { address: r?.start, length: r?.length });

/** A copy of a layout's list of ranges (none when it is left out). */
function rangesOf(list: Iterable<AddressRange<GuestAddress>> | undefined): AddressRange<GuestAddress>[] {
  if (list === undefined) return [];
  if (typeof (list as Partial<Iterable<unknown>>)?.[Symbol.iterator] !== 'function') throw bad('ram and mmio must be arrays of ranges');
  return [...list];
}

function checkLayout(ram: AddressRange<GuestAddress>[], mmio: AddressRange<GuestAddress>[]): void {
  if (ram.length === 0) throw bad('no RAM ranges');
  for (const r of [...ram, ...mmio]) {
    if (!(r instanceof AddressRange)) throw bad('ranges must be AddressRange objects');
    if (r.isEmpty) throw bad(`empty range ${r}`, r);
  }
  for (let i = 1; i < ram.length; i++) if (ram[i].start < ram[i - 1].end) throw bad(`RAM range ${ram[i]} is not above ${ram[i - 1]}`, ram[i]);
  const all = [...ram, ...mmio].sort((a, b) => a.start - b.start);
  for (let i = 1; i < all.length; i++) if (all[i].start < all[i - 1].end) throw bad(`${all[i]} overlaps ${all[i - 1]}`, all[i]);
}

function legacyName(start: number): string {
  if (start === 0) return 'ram-low';
  if (start === 0xa0000) return 'vga';
  if (start === 0x100000) return 'ram-0';
  return `pam-${start.toString(16)}`;
}
