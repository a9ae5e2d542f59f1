import { type GuestAddress, validateIndex } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { MAX_VIEW_BYTES } from '../backend/views.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import type { Bitmap } from '../bitmap/bitmap.js';
import { hex } from '../errors.js';
import { GuestMemoryRegion } from '../region/region.js';
import { MemoryManagerError } from './errors.js';

/**
 * The memory behind RAM: one backing, as consecutive content backends (chunks) that together
 * hold `size` bytes. One chunk covers at most 4 GiB (one set of typed-array views), so larger
 * memory, such as `MmapBackend.chunks()` of a big mapping, is several; spans that cross a chunk
 * boundary become several guest memory regions, which guest memory joins again.
 *
 * Handing the same backing to a new manager rebuilds the same memory (OpenVMM's
 * SharedMemoryBacking). With a dirty bitmap, every guest memory region made over the backing
 * marks it, at backing offsets, whichever guest address (RAM or alias) the write came through.
 */
export class MemoryBacking {
  /** The chunks, in order: chunk `i` holds backing bytes `[starts[i], starts[i] + size)`. */
  readonly chunks: readonly MemoryBackend[];
  /** Total bytes. */
  readonly size: number;
  /** The dirty bitmap over all `size` bytes, if writes are tracked. */
  readonly bitmap: Bitmap | undefined;
  readonly #starts: readonly number[];

  /**
   * @throws {MemoryManagerError} `ERR_INVALID_ARG` when given no chunks, something that is not
   * a backend, a bitmap that is not one, or an {@link AtomicBitmap} shorter than the chunks.
   */
  constructor(chunks: MemoryBackend | readonly MemoryBackend[], options: { bitmap?: Bitmap | undefined } = {}) {
    const list = Array.isArray(chunks) ? [...chunks] : [chunks as MemoryBackend];
    if (list.length === 0 || !list.every(isBackend)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'a memory backing needs one or more MemoryBackend objects');
    }
    const bitmap = options.bitmap;
    if (bitmap !== undefined && (typeof bitmap?.markDirty !== 'function' || typeof bitmap.sliceAt !== 'function')) {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'bitmap must be a Bitmap (markDirty, dirtyAt, sliceAt)');
    }
    const starts: number[] = [];
    let size = 0;
    for (const c of list) {
      starts.push(size);
      size += c.size;
    }
    // Writes mark after they land: a bitmap that stops short would fail writes half-done.
    if (bitmap instanceof AtomicBitmap && bitmap.byteLength < size) {
      throw new MemoryManagerError('ERR_INVALID_ARG', `the dirty bitmap covers ${hex(bitmap.byteLength)} bytes of a ${hex(size)}-byte backing`, {
        length: bitmap.byteLength,
        expected: size,
      });
    }
    this.bitmap = bitmap;
    this.chunks = Object.freeze(list);
    this.size = size;
    this.#starts = starts;
  }

  /**
   * Fresh zeroed memory in one heap ArrayBuffer, or a SharedArrayBuffer with `shared` (and the
   * dirty bitmap given, if any): at most
   * 4 GiB, what one set of views covers. More RAM needs an allocator (e.g. `guestmem/mmap`).
   *
   * @throws {MemoryManagerError} `ERR_RAM_TOO_LARGE` above 4 GiB, `ERR_ALLOCATION_FAILED` when the
   *   engine cannot allocate it.
   */
  static allocate(size: number, options: { shared?: boolean; bitmap?: Bitmap | undefined } = {}): MemoryBacking {
    validateIndex(size, 'size');
    if (size > MAX_VIEW_BYTES) {
      throw new MemoryManagerError('ERR_RAM_TOO_LARGE', `${hex(size)} bytes of RAM exceed the 4 GiB of one JS buffer: allocate it with guestmem/mmap`, {
        length: size,
        expected: MAX_VIEW_BYTES,
      });
    }
    let backend: MemoryBackend;
    try {
      backend = options.shared === true ? sharedBackend(size) : heapBackend(size);
    } catch (err) {
      throw new MemoryManagerError('ERR_ALLOCATION_FAILED', `cannot allocate ${hex(size)} bytes of guest RAM`, { length: size, cause: err });
    }
    return new MemoryBacking(backend, options);
  }

  /**
   * Guest memory regions showing backing bytes `[offset, offset + length)` at guest address
   * `start`: one per chunk the range touches, refusing writes when `readOnly`.
   *
   * @throws {MemoryManagerError} `ERR_INVALID_REGION` when the range passes the end of the backing.
   * @throws {RegionError} `ERR_REGION_READ_ONLY_BACKEND` for writable regions over a read-only
   *   backend.
   */
  regions(start: GuestAddress, offset: number, length: number, readOnly = false): GuestMemoryRegion[] {
    if (offset + length > this.size) {
      throw new MemoryManagerError(
        'ERR_INVALID_REGION',
        `backing bytes [${hex(offset)}, ${hex(offset + length)}) pass the end of the backing (${hex(this.size)})`,
        { address: offset, length },
      );
    }
    const out: GuestMemoryRegion[] = [];
    let i = this.#chunkAt(offset);
    for (let done = 0; done < length; i++) {
      const within = offset + done - this.#starts[i];
      const n = Math.min(length - done, this.chunks[i].size - within);
      const bitmap = this.bitmap?.sliceAt(offset + done);
      if (n > 0) out.push(new GuestMemoryRegion((start + done) as GuestAddress, this.chunks[i], { offset: within, length: n, bitmap, readOnly }));
      done += n;
    }
    return out;
  }

  /** Index of the chunk holding backing byte `offset`. */
  #chunkAt(offset: number): number {
    let i = 0;
    while (i + 1 < this.#starts.length && this.#starts[i + 1] <= offset) i++;
    return i;
  }
}

function isBackend(b: unknown): b is MemoryBackend {
  return typeof b === 'object' && b !== null && typeof (b as MemoryBackend).views === 'function' && Number.isSafeInteger((b as MemoryBackend).size);
}
