import { type GuestAddress, validateIndex } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { checkNoFileOverlap, deferChunkViews, MmapBackend, type MmapChunk } from './backend.js';
import { MmapError } from './errors.js';

/** Options of {@link mmapGuestMemory}. */
export interface MmapGuestMemoryOptions {
  /**
   * Track dirty pages: each region gets an {@link AtomicBitmap} with these options. Default:
   * untracked.
   */
  bitmap?: MmapBitmapOptions | undefined;
}

/** Options of one range of {@link mmapGuestMemory}. */
export interface MmapRangeOptions {
  /**
   * Make its regions read-only (ROM): every write path refuses them. Default: the backend's
   * own {@link MmapBackend.readOnly}, which cannot be overridden with `false`.
   */
  readOnly?: boolean | undefined;
}

/** A range of {@link mmapGuestMemory}: where the backend goes in the guest, and how. */
export type MmapRange = readonly [start: GuestAddress, backend: MmapBackend, options?: MmapRangeOptions];

/** How {@link mmapGuestMemory} tracks dirty pages. */
export interface MmapBitmapOptions {
  /** Bytes per tracked page (default 4096). */
  pageSize?: number | undefined;
  /** Keep the bits in SharedArrayBuffers, so that workers of this process mark into them too. */
  shared?: boolean | undefined;
  /**
   * Keep the bits in this memory instead (for example a memfd, so that other processes mark
   * into them too): the regions' words one after the other, 8 bytes per 64 pages of each
   * region. It stays the caller's.
   */
  words?: MemoryBackend | undefined;
}

/**
 * Guest memory over mmap'd backends, as vm-memory's `GuestMemoryMmap::from_ranges`: each
 * `[start, backend, options?]` places the whole backend at guest address `start`, one region
 * per chunk (at most 4 GiB each, see {@link MmapBackend.chunks}) at `start + chunk.offset`.
 *
 * The backends stay the caller's: close them when the memory is no longer used.
 *
 * @throws {MmapError} `ERR_MMAP_OVERLAP` when two backends map the same bytes of one file
 *   (checked before any region is built); `ERR_MMAP_INVALID_ARGUMENT` for an entry that is not
 *   `[GuestAddress, MmapBackend, options?]`, ranges that are not iterable, or options (or their
 *   `bitmap`) that are not an object.
 * @throws {GuestMemoryError} `ERR_NO_REGIONS`, `ERR_REGION_OVERLAP` for overlapping guest ranges.
 * @throws {RegionError} `ERR_REGION_OVERFLOW` for memory that would end beyond 2^53;
 *   `ERR_REGION_READ_ONLY_BACKEND` for `readOnly: false` over a read-only backend;
 *   `AddressError` `ERR_INVALID_ADDRESS` for a start that is not a safe integer.
 * @throws {BackendError} `ERR_BACKEND_CLOSED` for a closed backend.
 * @throws {BitmapError} `ERR_BITMAP_INVALID` for bitmap options the {@link AtomicBitmap}
 *   constructor refuses, or `words` too small for every region's bits.
 * @example
 * using ram = MmapBackend.memfd(6 * 2 ** 30);
 * const mem = mmapGuestMemory([[GuestAddress(0), ram]], { bitmap: { shared: true } });
 * mem.numRegions; // => 2
 */
export function mmapGuestMemory(ranges: Iterable<MmapRange>, options: MmapGuestMemoryOptions = {}): GuestMemory {
  const bitmap = bitmapOptions(options);
  if (typeof (ranges as Partial<Iterable<unknown>>)?.[Symbol.iterator] !== 'function') {
    throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'mmapGuestMemory takes an iterable of [GuestAddress, MmapBackend, options?] ranges');
  }
  const placed: [GuestAddress, MmapChunk, boolean | undefined][] = [];
  for (const entry of ranges) {
    const backend: unknown = Array.isArray(entry) ? entry[1] : undefined;
    if (!(backend instanceof MmapBackend)) {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'mmapGuestMemory takes [GuestAddress, MmapBackend, options?] ranges');
    }
    const start = validateIndex(entry[0], 'start');
    const readOnly = entry[2]?.readOnly;
    for (const chunk of backend.chunks()) placed.push([(start + chunk.offset) as GuestAddress, chunk, readOnly]);
  }
  checkNoFileOverlap(placed.map(([, chunk]) => chunk));
  let wordsAt = 0;
  const track = (size: number): AtomicBitmap | undefined => {
    if (bitmap === undefined) return undefined;
    if (bitmap.words === undefined) return new AtomicBitmap(size, { pageSize: bitmap.pageSize, shared: bitmap.shared });
    const b = AtomicBitmap.inBackend(bitmap.words, size, { pageSize: bitmap.pageSize, offset: wordsAt });
    wordsAt += Math.ceil(b.pageCount / 64) * 8;
    return b;
  };
  // Each chunk's views are made when its region is first used: wrapping is not free.
  const regions = deferChunkViews(
    placed.map(([, chunk]) => chunk),
    () => placed.map(([start, chunk, readOnly]) => new GuestMemoryRegion(start, chunk, { readOnly, bitmap: track(chunk.size) })),
  );
  return GuestMemory.fromRegions(regions);
}

/** The `bitmap` of `options`, checked to be an object if given. */
function bitmapOptions(options: unknown): MmapBitmapOptions | undefined {
  const bitmap: unknown = typeof options === 'object' && options !== null ? (options as MmapGuestMemoryOptions).bitmap : null;
  if (bitmap === undefined || (typeof bitmap === 'object' && bitmap !== null)) return bitmap as MmapBitmapOptions | undefined;
  throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'mmapGuestMemory takes options { bitmap?: { pageSize?, shared?, words? } }');
}
