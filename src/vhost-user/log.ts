import type { Bitmap } from '../bitmap/bitmap.js';
import { hex } from '../errors.js';
import { MAX_CHUNK_SIZE, MmapBackend } from '../mmap/backend.js';
import { VhostUserError } from './errors.js';
import { LOG_PAGE_SIZE } from './protocol.js';

/**
 * The front-end's dirty log for live migration (SET_LOG_BASE with VHOST_F_LOG_ALL): a bitmap in
 * shared memory, bit `p % 8` of byte `p / 8` standing for guest physical page `p` (4 KiB).
 *
 * Every region of the session's guest memory gets a {@link VhostUserLog.sliceAt} of this log as
 * its dirty bitmap, so every write path of guestmem (typed writes, slices, iovec buffers, fd reads
 * into memory, the used ring) marks the pages it touches. Bits are set with `Atomics.or` on the
 * log's bytes: the front-end clears them concurrently from another process.
 *
 * Marks only happen while the log is {@link VhostUserLog.active}: mapped and with LOG_ALL
 * negotiated. A mark beyond the log's end cannot be recorded; it is counted in
 * {@link VhostUserLog.missed} (a front-end that sized its log too small loses those pages).
 */
export class VhostUserLog {
  /**
   * Test-only: GUESTMEM_TEST_DISCARD_DIRTY_LOG=1 in the environment makes every log drop its
   * marks (still counted), the broken backend of the migration test's negative control. Never
   * set it elsewhere: a migration would silently leave stale pages behind.
   */
  static readonly #discard = process.env.GUESTMEM_TEST_DISCARD_DIRTY_LOG === '1';
  #marked = 0;
  #backend: MmapBackend | undefined;
  #bytes: Uint8Array | undefined;
  #logAll = false;
  #missed = 0;

  /** True when writes are being logged. */
  get active(): boolean {
    return this.#logAll && this.#bytes !== undefined;
  }

  /** Marks that fell beyond the end of the log. */
  get missed(): number {
    return this.#missed;
  }

  /** Page marks made while logging (a page marked twice counts twice). */
  get marked(): number {
    return this.#marked;
  }

  /** The log's bits (undefined until mapped). */
  get bytes(): Uint8Array | undefined {
    return this.#bytes;
  }

  /** Follows the negotiated VHOST_F_LOG_ALL. */
  setLogAll(on: boolean): void {
    this.#logAll = on;
  }

  /**
   * Maps `size` bytes of log at `offset` in `fd` (a memfd from the front-end; the log maps a
   * duplicate), replacing any previous log.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_LOG` for an empty or oversized log, or one the fd
   *   cannot back.
   */
  map(fd: number, size: number, offset: number): void {
    if (size === 0 || size + offset > MAX_CHUNK_SIZE) {
      throw new VhostUserError('ERR_VHOST_USER_LOG', `a log of ${hex(size)} bytes at ${hex(offset)} cannot be mapped`, {
        address: offset,
        length: size,
      });
    }
    if (VhostUserLog.#discard) {
      // Loud, so that a stray environment variable cannot quietly break a real migration.
      process.emitWarning('GUESTMEM_TEST_DISCARD_DIRTY_LOG=1: this dirty log drops every mark (test-only)');
    }
    let backend: MmapBackend;
    try {
      // Mapped from 0: the offset need not be page aligned.
      backend = MmapBackend.file({ fd, size: offset + size, shared: true });
    } catch (e) {
      throw new VhostUserError('ERR_VHOST_USER_LOG', `cannot map the log: ${(e as Error).message}`, {
        address: offset,
        length: size,
        cause: e,
      });
    }
    this.close();
    this.#backend = backend;
    this.#bytes = backend.views().u8.subarray(offset, offset + size);
  }

  /** Unmaps the log (logging stops). */
  close(): void {
    this.#backend?.close();
    this.#backend = undefined;
    this.#bytes = undefined;
  }

  /** A {@link Bitmap} for the region at guest physical address `base`. */
  sliceAt(base: number): Bitmap {
    return new LogSlice(this, base);
  }

  /** Marks the pages of `[gpa, gpa + length)`. @internal */
  mark(gpa: number, length: number): void {
    const bytes = this.#bytes;
    if (bytes === undefined || !this.#logAll || length === 0) return;
    const last = Math.floor((gpa + length - 1) / LOG_PAGE_SIZE);
    this.#marked += last - Math.floor(gpa / LOG_PAGE_SIZE) + 1;
    if (VhostUserLog.#discard) return;
    for (let page = Math.floor(gpa / LOG_PAGE_SIZE); page <= last; page++) {
      const i = Math.floor(page / 8);
      if (i >= bytes.length) {
        this.#missed += last - page + 1;
        return;
      }
      Atomics.or(bytes, i, 1 << page % 8);
    }
  }

  /** True when the page holding `gpa` is marked. @internal */
  isMarked(gpa: number): boolean {
    const bytes = this.#bytes;
    if (bytes === undefined) return false;
    const page = Math.floor(gpa / LOG_PAGE_SIZE);
    const i = Math.floor(page / 8);
    return i < bytes.length && (Atomics.load(bytes, i) & (1 << page % 8)) !== 0;
  }
}

/** The log as one region's bitmap: offsets count from the region's guest address. */
class LogSlice implements Bitmap {
  readonly #log: VhostUserLog;
  readonly #base: number;

  constructor(log: VhostUserLog, base: number) {
    this.#log = log;
    this.#base = base;
  }

  markDirty(offset: number, length: number): void {
    this.#log.mark(this.#base + offset, length);
  }

  dirtyAt(offset: number): boolean {
    return this.#log.isMarked(this.#base + offset);
  }

  sliceAt(offset: number): Bitmap {
    return new LogSlice(this.#log, this.#base + offset);
  }
}
