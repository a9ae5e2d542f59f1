import { GuestAddress } from '../address/address.js';
import { hex } from '../errors.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { deferChunkViews, MmapBackend, PAGE_SIZE } from '../mmap/backend.js';
import { GuestMemoryRegion } from '../region/region.js';
import { VhostUserError, type VhostUserErrorDetails } from './errors.js';
import type { VhostUserLog } from './log.js';
import { MAX_MEM_REGIONS, MAX_MEM_SLOTS } from './protocol.js';
import { shrinkSealed } from './sys.js';

/** The default of {@link MemoryTableOptions.maxBytes}: 1 TiB. */
export const DEFAULT_MAX_MEMORY: number = 2 ** 40;

/** How a {@link VhostUserMemoryTable} treats what the front-end sends. */
export interface MemoryTableOptions {
  /**
   * Map fds that are not sealed against shrinking (regular files, unsealed memfds). Default
   * false. Only for a trusted front-end: one that truncates such a file kills this process with
   * SIGBUS at the next access to the lost pages, which JavaScript cannot catch.
   */
  allowUnsealed?: boolean | undefined;
  /**
   * The most bytes the table may map, all regions together. Default {@link DEFAULT_MAX_MEMORY}.
   * Memory is mapped sparse and wrapped when first used, so this bounds address space and
   * bookkeeping, not RAM.
   */
  maxBytes?: number | undefined;
}

/**
 * Refuses an fd that is not sealed against shrinking, unless `allowUnsealed`.
 *
 * @param what - What the fd is for, as the message names it (`'memory region gpa 0x0'`).
 * @throws {VhostUserError} `ERR_VHOST_USER_UNSEALED`; `ERR_VHOST_USER_SYSTEM` for a bad fd.
 */
export function checkSealed(fd: number, what: string, allowUnsealed: boolean | undefined, details: VhostUserErrorDetails = {}): void {
  if (allowUnsealed === true || shrinkSealed(fd)) return;
  throw new VhostUserError(
    'ERR_VHOST_USER_UNSEALED',
    `the fd of ${what} is not sealed against shrinking (F_SEAL_SHRINK): a front-end that truncated it would kill this process with SIGBUS. ` +
      "QEMU's memory-backend-memfd seals by default; to trust this front-end anyway, set allowUnsealedMemory (guestmem-vhost-user-blk --allow-unsealed-memory)",
    details,
  );
}

/** One region of a vhost-user memory table, as the front-end describes it. */
export interface MemoryRegionDescription {
  /** Guest physical address of the region's first byte. */
  readonly guestAddress: number;
  /** Its length in bytes. */
  readonly size: number;
  /** Where the front-end has it mapped: ring addresses arrive in these addresses. */
  readonly userAddress: bigint;
  /** Where the region starts in its fd. */
  readonly mmapOffset: number;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Reads one region description from a payload (gpa, size, uva, mmap offset: four u64). Values
 * that guestmem cannot address exactly are refused, never rounded.
 *
 * @throws {VhostUserError} `ERR_VHOST_USER_MEM_TABLE`
 */
export function readRegion(view: DataView, at: number): MemoryRegionDescription {
  const gpa = view.getBigUint64(at, true);
  const size = view.getBigUint64(at + 8, true);
  const uva = view.getBigUint64(at + 16, true);
  const offset = view.getBigUint64(at + 24, true);
  if (size === 0n || gpa + size > MAX_SAFE || offset + size > MAX_SAFE || uva + size > 1n << 64n) {
    throw new VhostUserError(
      'ERR_VHOST_USER_MEM_TABLE',
      `memory region gpa ${hex(gpa)} size ${hex(size)} uva ${hex(uva)} offset ${hex(offset)} is empty or out of range`,
    );
  }
  return { guestAddress: Number(gpa), size: Number(size), userAddress: uva, mmapOffset: Number(offset) };
}

/** One mapped region: what the front-end said, its mapping, its guest regions (one per chunk). */
interface MappedRegion {
  readonly description: MemoryRegionDescription;
  readonly backend: MmapBackend;
  readonly parts: readonly GuestMemoryRegion[];
}

/**
 * A mapped vhost-user memory table: the guest's RAM as a {@link GuestMemory} of guest physical
 * regions (each mapped from the front-end's fd with `guestmem/mmap`, shared), plus the
 * translation of front-end virtual addresses (where rings are given) to guest addresses.
 *
 * A table is immutable. SET_MEM_TABLE maps a new one ({@link VhostUserMemoryTable.map});
 * ADD_MEM_REG and REM_MEM_REG derive one that shares this one's mappings
 * ({@link VhostUserMemoryTable.add}, {@link VhostUserMemoryTable.remove}), after which this one
 * is dropped, not closed. Closing unmaps every region; views still held elsewhere then read as
 * empty.
 */
export class VhostUserMemoryTable implements Disposable {
  /** The guest's memory. */
  readonly memory: GuestMemory;
  /** The regions as the front-end described them, sorted by user address. */
  readonly regions: readonly MemoryRegionDescription[];
  readonly #mapped: readonly MappedRegion[];

  /** @throws {VhostUserError} `ERR_VHOST_USER_MEM_TABLE` for regions that overlap. */
  private constructor(mapped: readonly MappedRegion[]) {
    const byUser = mapped.map((m) => m.description).sort((a, b) => (a.userAddress < b.userAddress ? -1 : 1));
    for (let i = 1; i < byUser.length; i++) {
      const prev = byUser[i - 1];
      if (prev.userAddress + BigInt(prev.size) > byUser[i].userAddress) {
        throw new VhostUserError('ERR_VHOST_USER_MEM_TABLE', `memory regions overlap at user address ${hex(byUser[i].userAddress)}`);
      }
    }
    try {
      this.memory = GuestMemory.fromRegions(mapped.flatMap((m) => m.parts));
    } catch (e) {
      throw new VhostUserError('ERR_VHOST_USER_MEM_TABLE', `memory regions overlap: ${(e as Error).message}`, { cause: e });
    }
    this.regions = byUser;
    this.#mapped = mapped;
  }

  /**
   * Maps `regions`, one fd each (`fds[i]` for `regions[i]`; the table maps duplicates and never
   * closes them). Every region's dirty bitmap is `log.sliceAt(its guest address)`.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_FDS` when the fd count differs from the region
   *   count; `ERR_VHOST_USER_MEM_TABLE` for no or too many regions, more bytes than
   *   {@link MemoryTableOptions.maxBytes}, regions that overlap in guest or user addresses, or a
   *   region its fd cannot back; `ERR_VHOST_USER_UNSEALED` for an fd not sealed against
   *   shrinking. Nothing is mapped before every region passed the size and seal checks, and
   *   nothing stays mapped after a throw.
   */
  static map(
    regions: readonly MemoryRegionDescription[],
    fds: readonly number[],
    log: VhostUserLog,
    options: MemoryTableOptions = {},
  ): VhostUserMemoryTable {
    if (regions.length === 0 || regions.length > MAX_MEM_REGIONS) {
      throw new VhostUserError('ERR_VHOST_USER_MEM_TABLE', `a memory table has 1 to ${MAX_MEM_REGIONS} regions, not ${regions.length}`);
    }
    if (fds.length !== regions.length) {
      throw new VhostUserError('ERR_VHOST_USER_FDS', `${regions.length} memory regions came with ${fds.length} fds`);
    }
    checkTotal(regions, options);
    regions.forEach((r, i) => checkRegionSealed(r, fds[i], options));
    const mapped: MappedRegion[] = [];
    try {
      regions.forEach((r, i) => mapped.push(mapRegion(r, fds[i], log)));
      return new VhostUserMemoryTable(mapped);
    } catch (e) {
      for (const m of mapped) m.backend.close();
      throw e;
    }
  }

  /**
   * This table with one more region, mapped from `fd` (a duplicate; `fd` stays the caller's).
   * Use the new table from then on and drop this one without closing it: they share mappings.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_MEM_TABLE` for a region that overlaps, cannot be
   *   mapped, would pass {@link MAX_MEM_SLOTS} or {@link MemoryTableOptions.maxBytes};
   *   `ERR_VHOST_USER_UNSEALED` as {@link VhostUserMemoryTable.map}. This table is unchanged then.
   */
  add(region: MemoryRegionDescription, fd: number, log: VhostUserLog, options: MemoryTableOptions = {}): VhostUserMemoryTable {
    if (this.#mapped.length >= MAX_MEM_SLOTS) {
      throw new VhostUserError('ERR_VHOST_USER_MEM_TABLE', `the memory table already has ${MAX_MEM_SLOTS} regions`);
    }
    checkTotal([...this.regions, region], options);
    checkRegionSealed(region, fd, options);
    const m = mapRegion(region, fd, log);
    try {
      return new VhostUserMemoryTable([...this.#mapped, m]);
    } catch (e) {
      m.backend.close();
      throw e;
    }
  }

  /**
   * This table without `region` (matched by guest address, size and user address), whose
   * mapping is closed; undefined when it was the last. Drop this table without closing it.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_MEM_TABLE` when no region matches.
   */
  remove(region: MemoryRegionDescription): VhostUserMemoryTable | undefined {
    const i = this.#mapped.findIndex(
      ({ description: d }) =>
        d.guestAddress === region.guestAddress && d.size === region.size && d.userAddress === region.userAddress,
    );
    if (i < 0) {
      throw new VhostUserError(
        'ERR_VHOST_USER_MEM_TABLE',
        `no memory region gpa ${hex(region.guestAddress)} size ${hex(region.size)} uva ${hex(region.userAddress)} to remove`,
        { address: region.guestAddress, length: region.size },
      );
    }
    const rest = this.#mapped.filter((_, k) => k !== i);
    const next = rest.length === 0 ? undefined : new VhostUserMemoryTable(rest);
    this.#mapped[i].backend.close();
    return next;
  }

  /**
   * The guest address of `length` bytes at front-end virtual address `userAddress`, which must
   * lie within one region.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_RING_ADDRESS`
   */
  translate(userAddress: bigint, length: number): GuestAddress {
    for (const r of this.regions) {
      if (userAddress >= r.userAddress && userAddress + BigInt(length) <= r.userAddress + BigInt(r.size)) {
        return GuestAddress(r.guestAddress + Number(userAddress - r.userAddress));
      }
    }
    throw new VhostUserError(
      'ERR_VHOST_USER_RING_ADDRESS',
      `user address ${hex(userAddress)} (+${hex(length)}) is outside the memory table`,
      { length },
    );
  }

  /** Unmaps every region. Idempotent. */
  close(): void {
    for (const m of this.#mapped) m.backend.close();
  }

  /** Same as {@link VhostUserMemoryTable.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Refuses regions that together pass the table's limit, before anything is mapped. */
function checkTotal(regions: readonly MemoryRegionDescription[], options: MemoryTableOptions): void {
  const max = options.maxBytes ?? DEFAULT_MAX_MEMORY;
  const total = regions.reduce((sum, r) => sum + r.size, 0);
  if (total > max) {
    throw new VhostUserError(
      'ERR_VHOST_USER_MEM_TABLE',
      `the memory table would map ${hex(total)} bytes, more than the ${hex(max)} allowed (the maxMemory option)`,
      { length: total, expected: max },
    );
  }
}

function checkRegionSealed(r: MemoryRegionDescription, fd: number, options: MemoryTableOptions): void {
  checkSealed(fd, `memory region gpa ${hex(r.guestAddress)} size ${hex(r.size)}`, options.allowUnsealed, {
    address: r.guestAddress,
    length: r.size,
  });
}

/**
 * Maps one region from its fd; each chunk (at most 4 GiB) is a guest region of its own, whose
 * views are made when it is first used (a sparse terabyte costs no more than it touches).
 */
function mapRegion(r: MemoryRegionDescription, fd: number, log: VhostUserLog): MappedRegion {
  const start = r.mmapOffset - (r.mmapOffset % PAGE_SIZE);
  const delta = r.mmapOffset - start;
  let backend: MmapBackend;
  try {
    backend = MmapBackend.file({ fd, offset: start, size: delta + r.size, shared: true });
  } catch (e) {
    throw new VhostUserError(
      'ERR_VHOST_USER_MEM_TABLE',
      `cannot map memory region gpa ${hex(r.guestAddress)} size ${hex(r.size)}: ${(e as Error).message}`,
      { address: r.guestAddress, length: r.size, cause: e },
    );
  }
  const parts: GuestMemoryRegion[] = [];
  deferChunkViews(backend.chunks(), () => {
    for (const chunk of backend.chunks()) {
      const from = Math.max(delta, chunk.offset);
      const to = Math.min(delta + r.size, chunk.offset + chunk.size);
      if (from >= to) continue;
      const gpa = r.guestAddress + from - delta;
      parts.push(new GuestMemoryRegion(GuestAddress(gpa), chunk, { offset: from - chunk.offset, length: to - from, bitmap: log.sliceAt(gpa) }));
    }
  });
  return { description: r, backend, parts };
}
