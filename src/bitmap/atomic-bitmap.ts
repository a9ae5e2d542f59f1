import { describe, isIndex, validateIndex } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { HOST_LITTLE_ENDIAN, isSharedArrayBuffer, sharedMemoryMissing } from '../backend/views.js';
import { hex } from '../errors.js';
import { type Bitmap, PageMarks } from './bitmap.js';
import { BitmapError } from './errors.js';

/** The page size a bitmap tracks unless told otherwise. */
export const DEFAULT_PAGE_SIZE = 4096;

/** The largest page size: 1 GiB, the largest huge page a VMM maps. */
const MAX_PAGE_SIZE = 2 ** 30;

/** Page indices stay below 2^32: they fit the unsigned 32-bit arithmetic of the hot path. */
const MAX_PAGES = 2 ** 32;

/** Offsets below this take the hot path, where `offset >>> shift` is exact. */
const FAST_LIMIT = 2 ** 32;

/** Options of the {@link AtomicBitmap} constructor. */
export interface AtomicBitmapOptions {
  /** Bytes per tracked page: a power of two from 1 to 2^30. Default {@link DEFAULT_PAGE_SIZE}. */
  pageSize?: number | undefined;
  /**
   * Keep the bits in a SharedArrayBuffer, so that other workers can mark and harvest them too
   * (see {@link AtomicBitmap.share}). Default false.
   */
  shared?: boolean | undefined;
  /**
   * For a shared bitmap: the largest `byteLength` that {@link AtomicBitmap.grow} must reach. The
   * bits then live in a growable SharedArrayBuffer with room reserved for that many pages, so
   * growth happens in place and every worker keeps marking the same bits. Default: the initial
   * `byteLength`. Either way the capacity is rounded up to whole 64-bit words (64 pages). A
   * non-shared bitmap grows by reallocating and takes no reservation.
   */
  maxByteLength?: number | undefined;
}

/**
 * What a worker needs to rebuild a shared bitmap over the same bits: structured-clonable, so
 * it can be posted or passed as `workerData`. Made by {@link AtomicBitmap.share}, consumed by
 * {@link AtomicBitmap.fromShared}.
 */
export interface SharedBitmapDescription {
  /** Bytes covered, as known to the bitmap that shared it. */
  readonly byteLength: number;
  /** Bytes per tracked page. */
  readonly pageSize: number;
  /** The bits, in the layout {@link AtomicBitmap.merge} reads (on little-endian hosts). */
  readonly words: SharedArrayBuffer;
}

/** A run of dirty pages in bytes: page-aligned, except that the last page ends at `byteLength`. */
export interface DirtyRange {
  /** Bytes from the start of what the bitmap covers. */
  readonly offset: number;
  /** Bytes in the run. */
  readonly length: number;
}

/**
 * A dirty log as a hypervisor reports it (KVM_GET_DIRTY_LOG): 64-bit words, bit `i` of word `j`
 * standing for page `64 * j + i`. A BigUint64Array holds the words as numbers; bytes (a
 * Uint8Array, Buffer or ArrayBuffer) hold them little-endian.
 */
export type DirtyLog = BigUint64Array | Uint8Array | ArrayBuffer | SharedArrayBuffer;

/** ES2024 resizable buffers: Node 20 has them, lib es2023 does not declare them. */
interface GrowableBuffer {
  readonly byteLength: number;
  readonly maxByteLength: number;
  grow(byteLength: number): void;
}
type GrowableSharedArrayBufferConstructor = new (byteLength: number, options: { maxByteLength: number }) => SharedArrayBuffer;

/**
 * Where the words of a bitmap made by {@link AtomicBitmap.inBackend} live: memory that other
 * workers or processes map too, and that is described together with the guest memory.
 */
export interface BitmapBacking {
  /** The memory holding the words. */
  readonly backend: MemoryBackend;
  /** Where the words start in the backend. */
  readonly offset: number;
}

/** Lets fromShared and inBackend hand the constructor existing words, out of reach of callers. */
const ADOPT = Symbol('adopt');
interface AdoptingOptions extends AtomicBitmapOptions {
  [ADOPT]?: { buffer: ArrayBufferLike; byteOffset: number; backing?: BitmapBacking };
}

/**
 * Dirty-page tracking for one region: one bit per page over `byteLength` bytes, in 32-bit words
 * that workers can share (vm-memory's `AtomicBitmap`).
 *
 * **Marking under concurrency.** The hot case is a small write inside one page whose bit is
 * already set. A non-shared bitmap is only ever touched by the thread that owns it, so it marks
 * with a plain `|=`, about as cheap as the write it records. A shared bitmap always marks with
 * `Atomics.or`, even when the bit looks set: the tempting "read the word, skip the locked write
 * if the bit is set" loses pages. The guest write may still sit in this CPU's store buffer when
 * the bit is read (x86 lets a load pass an earlier store; the JS memory model gives a plain
 * read no ordering either); a harvester may then clear the bit and copy the page without that
 * write, and the skipped mark leaves no bit for the next round. An `Atomics.or` after the write
 * orders it before the bit, so a harvest that takes the bit also sees the data, and a harvest
 * that came first leaves the bit set for the next round. The price is a locked instruction per
 * write: on a ~3.8 ns u64 write, a plain mark adds ~0.7-1 ns and an atomic one ~10 ns (Node 20,
 * x86-64). Share a bitmap only when other workers write the memory it tracks.
 *
 * **Byte marks.** The typed writes of regions and slices over a non-shared bitmap do not call
 * {@link AtomicBitmap.markDirty}: they store a 1 in a byte per page (a shift and a store, the
 * same code for tracked and untracked memory), and every method that reads or clears bits first
 * folds those bytes into them. The bytes cost one per page (256 KiB per GiB at 4 KiB pages), are
 * made only once a region or slice uses the bitmap, and belong to the one thread that owns the
 * bitmap, so the fold needs no atomics. A shared bitmap has none: its bits are read by other
 * workers and processes (a vhost-user front-end reads the log in place), so every mark goes
 * into them at once, atomically.
 *
 * **Range checks.** vm-memory ignores marks beyond the bitmap; this one throws
 * `ERR_BITMAP_OUT_OF_RANGE`, because a mark out of range means the caller's region bookkeeping
 * is wrong, and ignoring it would silently lose dirty pages. Bad numbers (negative, fractional,
 * unsafe) throw `AddressError` `ERR_INVALID_ADDRESS`, as everywhere in guestmem.
 *
 * **Growth.** {@link AtomicBitmap.grow} keeps every bit. A non-shared bitmap reallocates. A
 * shared bitmap grows in place, within the capacity reserved at creation
 * ({@link AtomicBitmapOptions.maxByteLength}): workers holding the same words see the new pages'
 * bits as soon as they call `grow` with the new length themselves (as their view of the region
 * learns it grew); until then they refuse marks beyond their old length, and their harvests
 * leave the new pages' bits alone.
 *
 * @example
 * const bitmap = new AtomicBitmap(1 << 20, { shared: true });
 * bitmap.markDirty(0x1ff8, 16); // pages 1 and 2
 * const taken = [...bitmap.harvest().dirtyRanges()]; // => [{ offset: 0x1000, length: 0x2000 }]
 * bitmap.count(); // => 0
 */
export class AtomicBitmap implements Bitmap {
  // The hot fields of markDirty are declared, not defined: a class field starts out undefined,
  // which leaves V8 a field of any type and a check on every load (~1-2 ns a mark).
  /** @internal The bits: bit `i % 32` of word `i >>> 5` is page `i`. */
  declare private _words: Int32Array;
  #byteLength = 0;
  #pageCount = 0;
  /** Words holding this bitmap's pages: `ceil(pageCount / 32)`. */
  #usedWords = 0;
  /** The bits of the last used word that stand for pages of this bitmap. */
  #lastMask = 0;
  /** @internal Marks ending at or below this (`min(byteLength, 4 GiB)`) take the hot path. */
  declare private _fastEnd: number;
  readonly #pageSize: number;
  /** @internal `log2(pageSize)`. */
  declare private readonly _shift: number;
  /** @internal The words are shared with other threads: marks are atomic. */
  declare private readonly _shared: boolean;
  readonly #backing: BitmapBacking | undefined;
  /** Byte-per-page marks of a non-shared bitmap, made when a span first asks for them. */
  #marks: PageMarks | undefined;

  /**
   * A bitmap of `byteLength` bytes, all clean.
   *
   * @throws {BitmapError} `ERR_BITMAP_INVALID` for a page size that is not a power of two in
   * `[1, 2^30]`, more than 2^32 pages, a non-boolean `shared`, or a `maxByteLength` that is
   * below `byteLength` or given for a non-shared bitmap; `ERR_SHARED_MEMORY_UNAVAILABLE` for a
   * `shared` bitmap where there is no SharedArrayBuffer (a page that is not cross-origin isolated).
   * @throws {AddressError} `ERR_INVALID_ADDRESS` when a length is not a non-negative safe integer.
   */
  constructor(byteLength: number, options: AtomicBitmapOptions = {}) {
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    checkPageSize(pageSize);
    const pages = pagesFor(byteLength, pageSize);
    const { shared = false, maxByteLength } = options;
    if (typeof shared !== 'boolean') {
      throw new BitmapError('ERR_BITMAP_INVALID', `shared must be a boolean, got ${describe(shared)}`);
    }
    this.#pageSize = pageSize;
    this._shift = 31 - Math.clz32(pageSize);
    const adopted = (options as AdoptingOptions)[ADOPT];
    this._shared = shared || adopted !== undefined;
    const missing = shared ? sharedMemoryMissing() : undefined;
    if (missing !== undefined) throw new BitmapError('ERR_SHARED_MEMORY_UNAVAILABLE', `cannot make a shared bitmap: ${missing}`);
    this.#backing = adopted?.backing;
    if (adopted !== undefined) {
      const room = adopted.buffer.byteLength - adopted.byteOffset;
      if (room < wordBytes(pages)) {
        throw new BitmapError('ERR_BITMAP_INVALID', `shared words of ${hex(room)} bytes cannot hold ${pages} pages`, {
          length: byteLength,
        });
      }
      this._words = new Int32Array(adopted.buffer, adopted.byteOffset, wordBytes(pages) / 4);
    } else if (maxByteLength !== undefined) {
      if (!shared) {
        throw new BitmapError(
          'ERR_BITMAP_INVALID',
          'maxByteLength reserves room in shared words; a non-shared bitmap grows without it',
        );
      }
      const maxPages = pagesFor(maxByteLength, pageSize);
      if (maxByteLength < byteLength) {
        throw new BitmapError(
          'ERR_BITMAP_INVALID',
          `maxByteLength ${hex(maxByteLength)} is below byteLength ${hex(byteLength)}`,
          { length: maxByteLength },
        );
      }
      const buffer = new (SharedArrayBuffer as unknown as GrowableSharedArrayBufferConstructor)(wordBytes(pages), {
        maxByteLength: wordBytes(maxPages),
      });
      // An explicit length: a view that tracks a growable buffer's length is ~15x slower in V8.
      this._words = new Int32Array(buffer, 0, wordBytes(pages) / 4);
    } else {
      this._words = new Int32Array(shared ? new SharedArrayBuffer(wordBytes(pages)) : new ArrayBuffer(wordBytes(pages)));
    }
    this.#setLength(byteLength, pages);
  }

  /**
   * Rebuilds, in this worker, a bitmap over the bits another worker shared.
   *
   * @throws {BitmapError} `ERR_BITMAP_INVALID` when `description` is not one that
   * {@link AtomicBitmap.share} made: no SharedArrayBuffer, a bad geometry, or words too small.
   */
  static fromShared(description: SharedBitmapDescription): AtomicBitmap {
    const words: unknown = typeof description === 'object' && description !== null ? description.words : undefined;
    if (!isSharedArrayBuffer(words)) {
      throw new BitmapError('ERR_BITMAP_INVALID', `a shared bitmap description needs its words as a SharedArrayBuffer, got ${describe(words)}`);
    }
    checkPageSize(description.pageSize);
    const options: AdoptingOptions = { pageSize: description.pageSize, [ADOPT]: { buffer: words, byteOffset: 0 } };
    return new AtomicBitmap(description.byteLength, options);
  }

  /**
   * A shared bitmap whose words live in `backend` from `offset` on (`ceil(pages / 64) * 8`
   * bytes, the words all clean or as another side left them): for example a memfd, so that
   * another process marks into the same bits (`shareGuestMemory` describes the backend with
   * the guest memory). It cannot grow beyond those words. Keep the backend open while the
   * bitmap is used: once closed, marks throw.
   *
   * @throws {BitmapError} `ERR_BITMAP_INVALID` for a backend no other worker can see, an
   * offset that is not a multiple of 8 (or words that would not be 4-byte aligned in the
   * backend's buffer), words that do not fit the backend, or a bad geometry.
   */
  static inBackend(
    backend: MemoryBackend,
    byteLength: number,
    options: { pageSize?: number | undefined; offset?: number | undefined } = {},
  ): AtomicBitmap {
    const { pageSize = DEFAULT_PAGE_SIZE, offset = 0 } = options ?? {};
    checkPageSize(pageSize);
    const bytes = wordBytes(pagesFor(byteLength, pageSize));
    validateIndex(offset, 'offset');
    // The words are 32-bit for Atomics: where the backend itself starts counts too.
    const misaligned = offset % 8 !== 0 || (backend.byteOffset + offset) % 4 !== 0;
    if (!backend.shared || misaligned || offset + bytes > backend.size) {
      throw new BitmapError(
        'ERR_BITMAP_INVALID',
        `bitmap words need ${hex(bytes)} bytes at an 8-byte aligned offset of shared memory; got offset ${hex(offset)} of ${hex(backend.size)} bytes of ${backend.shared ? '' : 'non-'}shared ${backend.kind} memory at buffer offset ${hex(backend.byteOffset)}`,
        { address: offset, length: bytes },
      );
    }
    const buffer = backend.views().buffer;
    const adopt = { buffer, byteOffset: backend.byteOffset + offset, backing: { backend, offset } };
    return new AtomicBitmap(byteLength, { pageSize, [ADOPT]: adopt } as AdoptingOptions);
  }

  /** Where the words live, for a bitmap made by {@link AtomicBitmap.inBackend}. */
  get backing(): BitmapBacking | undefined {
    return this.#backing;
  }

  /** Bytes covered. */
  get byteLength(): number {
    return this.#byteLength;
  }

  /** Bytes per tracked page. */
  get pageSize(): number {
    return this.#pageSize;
  }

  /** Pages covered: `ceil(byteLength / pageSize)`. */
  get pageCount(): number {
    return this.#pageCount;
  }

  /** True when the bits live in a SharedArrayBuffer that workers can share. */
  get shared(): boolean {
    return this._shared;
  }

  /**
   * A description another worker turns back into a bitmap over the same bits with
   * {@link AtomicBitmap.fromShared}.
   *
   * @throws {BitmapError} `ERR_BITMAP_NOT_SHARED` unless the bitmap was created `shared`, or
   * when its words live in a backend (describe that backend instead).
   */
  share(): SharedBitmapDescription {
    if (!this._shared) {
      throw new BitmapError('ERR_BITMAP_NOT_SHARED', 'this bitmap was not created shared; pass { shared: true } to share it');
    }
    if (this.#backing !== undefined) {
      throw new BitmapError('ERR_BITMAP_NOT_SHARED', `this bitmap's words live in a ${this.#backing.backend.kind} backend: share that backend`);
    }
    return { byteLength: this.#byteLength, pageSize: this.#pageSize, words: this._words.buffer as SharedArrayBuffer };
  }

  /**
   * Marks every page that `[offset, offset + length)` touches. A zero length marks nothing.
   *
   * @throws {BitmapError} `ERR_BITMAP_OUT_OF_RANGE` when the range ends beyond `byteLength`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for an offset or length that is not a
   * non-negative safe integer.
   */
  markDirty(offset: number, length: number): void {
    // The hot case, kept small so that V8 inlines it into every write path: one valid page
    // below 4 GiB. `x >>> 0 === x` holds for non-negative integers below 2^32 only.
    const end = offset + length;
    if (offset >>> 0 === offset && length >>> 0 === length && length > 0 && end <= this._fastEnd) {
      const first = offset >>> this._shift;
      if (first === (end - 1) >>> this._shift) {
        // Atomics.or stays out of this function: its mere presence here cost ~2 ns per mark of a
        // non-shared bitmap on Node 20 (measured), which never takes that branch.
        if (this._shared) this.#orShared(first);
        else this._words[first >>> 5] |= 1 << (first & 31);
        return;
      }
    }
    this.#markSlow(offset, length);
  }

  #orShared(page: number): void {
    Atomics.or(this._words, page >>> 5, 1 << (page & 31));
  }

  /** What the hot path declined: throws for a bad mark, ignores an empty one, marks several pages or beyond 4 GiB. */
  #markSlow(offset: number, length: number): void {
    checkRange(offset, length, this.#byteLength, 'the bitmap');
    if (length > 0) this.#update(this.#pageOf(offset), this.#pageOf(offset + length - 1), true);
  }

  /**
   * Clears every page that `[offset, offset + length)` touches, as vm-memory's
   * `reset_addr_range` does: a page partly inside the range is cleared too.
   *
   * @throws {BitmapError} `ERR_BITMAP_OUT_OF_RANGE` when the range ends beyond `byteLength`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a bad offset or length.
   */
  resetRange(offset: number, length: number): void {
    checkRange(offset, length, this.#byteLength, 'the bitmap');
    if (length === 0) return;
    this.#fold();
    this.#update(this.#pageOf(offset), this.#pageOf(offset + length - 1), false);
  }

  /** Clears every page. Bits that another worker set beyond this bitmap's length stay. */
  resetAll(): void {
    this.#fold();
    const words = this._words;
    for (let k = 0; k < this.#usedWords; k++) {
      const mask = this.#maskOf(k);
      if ((Atomics.load(words, k) & mask) !== 0) Atomics.and(words, k, ~mask);
    }
  }

  /**
   * True when the byte at `offset` lies in a dirty page.
   *
   * @throws {BitmapError} `ERR_BITMAP_OUT_OF_RANGE` when `offset >= byteLength`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a bad offset.
   */
  dirtyAt(offset: number): boolean {
    checkOffset(offset, this.#byteLength, 'the bitmap');
    this.#fold();
    return this.#bit(this.#pageOf(offset));
  }

  /**
   * True when page `pageIndex` (the page at byte `pageIndex * pageSize`) is dirty.
   *
   * @throws {BitmapError} `ERR_BITMAP_OUT_OF_RANGE` when `pageIndex >= pageCount`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a bad index.
   */
  isBitDirty(pageIndex: number): boolean {
    validateIndex(pageIndex, 'pageIndex');
    if (pageIndex >= this.#pageCount) {
      throw new BitmapError(
        'ERR_BITMAP_OUT_OF_RANGE',
        `page ${pageIndex} is beyond the ${this.#pageCount} pages the bitmap covers`,
        { address: pageIndex * this.#pageSize },
      );
    }
    this.#fold();
    return this.#bit(pageIndex);
  }

  /**
   * A bitmap that sees and sets these bits with offsets counted from `offset`, up to this
   * bitmap's end (which moves when it grows). Slices of slices add up their offsets.
   *
   * @throws {BitmapError} `ERR_BITMAP_OUT_OF_RANGE` when `offset > byteLength`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a bad offset.
   */
  sliceAt(offset: number): Bitmap {
    checkRange(offset, 0, this.#byteLength, 'the bitmap');
    return new AtomicBitmapSlice(this, offset);
  }

  /** How many pages are dirty. */
  count(): number {
    this.#fold();
    let n = 0;
    for (let k = 0; k < this.#usedWords; k++) n += popcount(this.#load(k));
    return n;
  }

  /**
   * The dirty pages as maximal runs, in bytes, in ascending order. Bytes rather than pages
   * because that is what a caller copies; the last page is cut at `byteLength`.
   *
   * The iteration is live: it reads each word when it reaches it, so marks made meanwhile may
   * or may not show. Use {@link AtomicBitmap.harvest} for a consistent snapshot.
   */
  *dirtyRanges(): IterableIterator<DirtyRange> {
    this.#fold();
    let start = -1; // first page of the run under way, or -1
    for (let k = 0; k < this.#usedWords; k++) {
      const word = this.#load(k);
      if (word === (start < 0 ? 0 : -1)) continue; // the whole word carries on as before
      for (let b = 0; b < 32; b++) {
        const dirty = (word & (1 << b)) !== 0;
        if (dirty && start < 0) {
          start = k * 32 + b;
        } else if (!dirty && start >= 0) {
          yield this.#range(start, k * 32 + b);
          start = -1;
        }
      }
    }
    if (start >= 0) yield this.#range(start, this.#pageCount);
  }

  /**
   * Takes the dirty pages and clears them, atomically per word (`Atomics.exchange`): a page
   * marked while this runs is either in the result or still dirty afterwards, never lost.
   *
   * @returns A new non-shared bitmap of the same geometry holding exactly the pages taken: one
   * bit per page, however many are dirty. Read it with {@link AtomicBitmap.dirtyRanges},
   * {@link AtomicBitmap.count} or {@link AtomicBitmap.isBitDirty}.
   */
  harvest(): AtomicBitmap {
    this.#fold();
    const taken = new AtomicBitmap(this.#byteLength, { pageSize: this.#pageSize });
    const words = this._words;
    const last = this.#usedWords - 1;
    for (let k = 0; k <= last; k++) {
      // Reading first spares clean words a locked write; a bit set after the read stays set.
      if (Atomics.load(words, k) === 0) continue;
      // The last word may hold bits of pages that another worker's grown bitmap knows and this
      // one does not: take only this bitmap's own.
      taken._words[k] = k === last ? Atomics.and(words, k, ~this.#lastMask) & this.#lastMask : Atomics.exchange(words, k, 0);
    }
    return taken;
  }

  /**
   * ORs an external dirty log (a hypervisor's, in KVM_GET_DIRTY_LOG layout) into the bitmap. The
   * log's pages are this bitmap's pages. The log must cover every page (`ceil(pageCount / 64)`
   * words at least): a shorter one would leave the pages past its end unreported, so it is
   * refused. A longer one may only carry clean bits beyond the last page.
   *
   * @throws {BitmapError} `ERR_BITMAP_LOG_TOO_SHORT` (`length`: the log's bytes, `expected`: the
   * bytes needed) for a log that does not cover every page; `ERR_BITMAP_OUT_OF_RANGE` when the
   * log marks a page beyond the bitmap; `ERR_BITMAP_INVALID` when `log` is not one of the
   * {@link DirtyLog} types or its length is not a whole number of 64-bit words. Nothing is merged
   * then.
   */
  merge(log: DirtyLog): void {
    this._mergeAt(log, 0, this.#pageCount);
  }

  /**
   * @internal {@link AtomicBitmap.merge} into pages `[first, first + pages)` (within the bitmap):
   * log page `i` is page `first + i`; the log must cover `pages` pages and mark none beyond.
   */
  _mergeAt(log: DirtyLog, first: number, pages: number): void {
    const view = logView(log);
    // Bytes are little-endian; a BigUint64Array holds numbers in the host's byte order, where
    // on a big-endian host the high half of each word comes first.
    const little = log instanceof BigUint64Array ? HOST_LITTLE_ENDIAN : true;
    const swap = little ? 0 : 1;
    const n = view.byteLength / 4;
    const wordAt = (k: number): number => view.getInt32(4 * (k ^ swap), little);
    // Check everything before changing anything: a refused log leaves no half-merged bits.
    if (view.byteLength < wordBytes(pages)) {
      throw new BitmapError(
        'ERR_BITMAP_LOG_TOO_SHORT',
        `a dirty log of ${view.byteLength} bytes covers ${view.byteLength * 8} pages; it must cover all ${pages} (${wordBytes(pages)} bytes)`,
        { length: view.byteLength, expected: wordBytes(pages) },
      );
    }
    for (let k = Math.max(Math.ceil(pages / 32) - 1, 0); k < n; k++) {
      const beyond = wordAt(k) & ~pageMask(k, pages);
      if (beyond !== 0) {
        const page = k * 32 + 31 - Math.clz32(beyond & -beyond);
        throw new BitmapError(
          'ERR_BITMAP_OUT_OF_RANGE',
          `the dirty log marks page ${page}, beyond the ${pages} pages it is merged into`,
          { address: page * this.#pageSize, length: view.byteLength },
        );
      }
    }
    const words = this._words;
    const shift = first & 31;
    for (let k = 0; k < Math.ceil(pages / 32); k++) {
      const bits = wordAt(k);
      if (bits === 0) continue;
      // Log word k lands on pages first + 32k ..: one bitmap word, or two when `first` is not word-aligned.
      const w = (first >>> 5) + k;
      if (shift === 0) {
        Atomics.or(words, w, bits);
      } else {
        Atomics.or(words, w, bits << shift);
        const high = bits >>> (32 - shift);
        if (high !== 0) Atomics.or(words, w + 1, high);
      }
    }
  }

  /**
   * @internal Reads the dirty bits of the pages set in `pages` (a bitmap of this geometry),
   * clearing them with `clear` (atomically per word, as {@link AtomicBitmap.harvest}), and
   * returns them as a new non-shared bitmap; other pages are neither read nor cleared.
   */
  _takePages(pages: AtomicBitmap, clear: boolean): AtomicBitmap {
    this.#fold();
    pages.#fold();
    const taken = new AtomicBitmap(this.#byteLength, { pageSize: this.#pageSize });
    const words = this._words;
    const wanted = pages._words;
    const count = Math.min(this.#usedWords, wanted.length);
    for (let k = 0; k < count; k++) {
      const mask = wanted[k] & this.#maskOf(k);
      if (mask === 0 || (Atomics.load(words, k) & mask) === 0) continue;
      taken._words[k] = (clear ? Atomics.and(words, k, ~mask) : Atomics.load(words, k)) & mask;
    }
    return taken;
  }

  /**
   * Extends the bitmap to `newByteLength` bytes for a region that grew; every bit is kept and
   * the new pages start clean. Slices follow. See the class notes for shared bitmaps.
   *
   * @throws {BitmapError} `ERR_BITMAP_INVALID` when `newByteLength` is below `byteLength` or
   * needs more than 2^32 pages; `ERR_BITMAP_CAPACITY` when a shared bitmap would outgrow the
   * capacity it reserved.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for a bad length.
   */
  grow(newByteLength: number): void {
    const pages = pagesFor(newByteLength, this.#pageSize);
    if (newByteLength < this.#byteLength) {
      throw new BitmapError(
        'ERR_BITMAP_INVALID',
        `cannot shrink a bitmap from ${hex(this.#byteLength)} to ${hex(newByteLength)} bytes`,
        { length: newByteLength },
      );
    }
    this.#fold();
    const bytes = wordBytes(pages);
    const buffer = this._words.buffer as unknown as GrowableBuffer;
    if (this.#backing !== undefined) {
      if (bytes > this._words.byteLength) {
        throw new BitmapError(
          'ERR_BITMAP_CAPACITY',
          `a bitmap in a ${this.#backing.backend.kind} backend has words for ${hex(this._words.byteLength * 8 * this.#pageSize)} bytes and cannot grow to ${hex(newByteLength)}`,
          { length: newByteLength },
        );
      }
    } else if (bytes <= buffer.maxByteLength) {
      reserve(buffer, bytes);
      this._words = new Int32Array(this._words.buffer, 0, bytes / 4);
    } else if (this._shared) {
      throw new BitmapError(
        'ERR_BITMAP_CAPACITY',
        `a shared bitmap reserved words for ${hex(buffer.maxByteLength * 8 * this.#pageSize)} bytes and cannot grow to ${hex(newByteLength)}; create it with a larger maxByteLength`,
        { length: newByteLength },
      );
    } else {
      const words = new Int32Array(bytes / 4);
      words.set(this._words);
      this._words = words;
    }
    this.#setLength(newByteLength, pages);
    // Folded above: the spans holding the marks object see fresh, clean bytes for every page.
    if (this.#marks !== undefined) this.#marks.bytes = markBytes(pages);
  }

  /**
   * @internal The byte marks of a non-shared bitmap (made on first use), or `undefined` for a
   * shared one, whose marks must reach the shared bits at once.
   */
  _pageMarks(): PageMarks | undefined {
    if (this._shared) return undefined;
    return (this.#marks ??= new PageMarks(markBytes(this.#pageCount), this._shift));
  }

  /** Moves the byte marks into the bits: this thread alone marks a non-shared bitmap. */
  #fold(): void {
    const m = this.#marks;
    if (m === undefined) return;
    const bytes = m.bytes;
    // Four pages per test: the marks are sparse between harvests.
    const groups = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const words = this._words;
    for (let g = 0; g < groups.length; g++) {
      if (groups[g] === 0) continue;
      for (let p = g * 4; p < g * 4 + 4; p++) {
        if (bytes[p] !== 0) words[p >>> 5] |= 1 << (p & 31);
      }
      groups[g] = 0;
    }
  }

  #setLength(byteLength: number, pages: number): void {
    this.#byteLength = byteLength;
    this.#pageCount = pages;
    this.#usedWords = Math.ceil(pages / 32);
    this.#lastMask = pages % 32 === 0 ? -1 : (1 << (pages % 32)) - 1;
    this._fastEnd = Math.min(byteLength, FAST_LIMIT);
  }

  /** The page holding byte `offset`, for any safe offset (exact: pageSize is a power of two). */
  #pageOf(offset: number): number {
    return Math.floor(offset / this.#pageSize);
  }

  /** The bits of word `k` that stand for this bitmap's pages. */
  #maskOf(k: number): number {
    if (k < this.#usedWords - 1) return -1;
    return k === this.#usedWords - 1 ? this.#lastMask : 0;
  }

  #load(k: number): number {
    return Atomics.load(this._words, k) & this.#maskOf(k);
  }

  #bit(page: number): boolean {
    return (Atomics.load(this._words, page >>> 5) & (1 << (page & 31))) !== 0;
  }

  /** Sets or clears pages `first..last` (inclusive), a word at a time. */
  #update(first: number, last: number, set: boolean): void {
    const words = this._words;
    const lastWord = last >>> 5;
    for (let k = first >>> 5; k <= lastWord; k++) {
      let mask = -1;
      if (k === first >>> 5) mask &= -1 << (first & 31);
      if (k === lastWord) mask &= -1 >>> (31 - (last & 31));
      if (set) Atomics.or(words, k, mask);
      else Atomics.and(words, k, ~mask);
    }
  }

  #range(first: number, end: number): DirtyRange {
    const offset = first * this.#pageSize;
    return { offset, length: Math.min(end * this.#pageSize, this.#byteLength) - offset };
  }
}

/** Where the bits of a bitmap live: an {@link AtomicBitmap} and the offset its offsets count from. */
export interface AtomicBitmapTarget {
  /** The bitmap whose bits are set. */
  readonly root: AtomicBitmap;
  /** Byte offset in `root` of the bitmap's offset 0. */
  readonly base: number;
}

/**
 * The {@link AtomicBitmap} whose bits `bitmap` sets: itself, or the root of a
 * {@link AtomicBitmap.sliceAt} slice (with the slice's offset); `undefined` for any other bitmap.
 */
export function atomicBitmapTarget(bitmap: Bitmap): AtomicBitmapTarget | undefined {
  if (bitmap instanceof AtomicBitmap) return { root: bitmap, base: 0 };
  if (bitmap instanceof AtomicBitmapSlice) return { root: bitmap.root, base: bitmap.base };
  return undefined;
}

/** {@link AtomicBitmap.sliceAt}: the same bits, seen from `base` on. */
class AtomicBitmapSlice implements Bitmap {
  readonly #root: AtomicBitmap;
  readonly #base: number;

  get root(): AtomicBitmap {
    return this.#root;
  }

  get base(): number {
    return this.#base;
  }

  constructor(root: AtomicBitmap, base: number) {
    this.#root = root;
    this.#base = base;
  }

  markDirty(offset: number, length: number): void {
    // Checked here, so that errors speak in the slice's offsets; the root checks the rest.
    const limit = this.#root.byteLength - this.#base;
    if (offset >= 0 && offset + length <= limit && Number.isInteger(offset)) {
      this.#root.markDirty(this.#base + offset, length);
    } else {
      checkRange(offset, length, limit, this.#what());
    }
  }

  dirtyAt(offset: number): boolean {
    checkOffset(offset, this.#root.byteLength - this.#base, this.#what());
    return this.#root.dirtyAt(this.#base + offset);
  }

  sliceAt(offset: number): Bitmap {
    checkRange(offset, 0, this.#root.byteLength - this.#base, this.#what());
    return new AtomicBitmapSlice(this.#root, this.#base + offset);
  }

  #what(): string {
    return `the slice at ${hex(this.#base)}`;
  }
}

function checkPageSize(pageSize: number): void {
  if (!isIndex(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
    throw new BitmapError('ERR_BITMAP_INVALID', `pageSize must be a power of two from 1 to 2^30, got ${describe(pageSize)}`);
  }
}

/** Pages needed for `byteLength` bytes, checked against the 2^32 the hot path relies on. */
function pagesFor(byteLength: number, pageSize: number): number {
  validateIndex(byteLength, 'byteLength');
  const pages = Math.ceil(byteLength / pageSize);
  if (pages > MAX_PAGES) {
    throw new BitmapError(
      'ERR_BITMAP_INVALID',
      `${hex(byteLength)} bytes make ${pages} pages of ${hex(pageSize)}; a bitmap tracks at most 2^32 pages`,
      { length: byteLength },
    );
  }
  return pages;
}

/** Zeroed mark bytes for `pages` pages, in whole 64-bit words. */
function markBytes(pages: number): Uint8Array {
  return new Uint8Array(Math.ceil(pages / 8) * 8);
}

/**
 * @internal Where the typed writes of a span of `length` bytes with `bitmap` store their marks:
 * `marks.bytes[(base + offset) >>> marks.shift]`; `undefined` when they go through
 * `bitmap.markDirty`: untracked memory (the no-op bitmap, which V8 inlines to nothing), a shared
 * bitmap, a bitmap of another kind, or one that does not cover the span (its marks must throw).
 */
export function spanMarks(bitmap: Bitmap, length: number): { marks: PageMarks; base: number } | undefined {
  const target = atomicBitmapTarget(bitmap);
  if (target === undefined || target.base + length > Math.min(target.root.byteLength, FAST_LIMIT)) return undefined;
  const marks = target.root._pageMarks();
  return marks && { marks, base: target.base };
}

/** The bits of word `k` that stand for pages below `pages`. */
function pageMask(k: number, pages: number): number {
  const valid = pages - 32 * k;
  if (valid >= 32) return -1;
  return valid <= 0 ? 0 : (1 << valid) - 1;
}

/** Bytes of words for `pages` pages, rounded to whole 64-bit words as in a KVM dirty log. */
function wordBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Throws unless `[offset, offset + length)` ends at or before `limit` (so `[limit, limit)` passes). */
function checkRange(offset: number, length: number, limit: number, what: string): void {
  validateIndex(offset, 'offset');
  validateIndex(length, 'length');
  if (offset + length > limit) {
    throw new BitmapError(
      'ERR_BITMAP_OUT_OF_RANGE',
      `[${hex(offset)}, ${hex(offset + length)}) ends beyond the ${hex(limit)} bytes ${what} covers`,
      { address: offset, length },
    );
  }
}

/** Throws unless `offset < limit`. */
function checkOffset(offset: number, limit: number, what: string): void {
  validateIndex(offset, 'offset');
  if (offset >= limit) {
    throw new BitmapError('ERR_BITMAP_OUT_OF_RANGE', `offset ${hex(offset)} is beyond the ${hex(limit)} bytes ${what} covers`, {
      address: offset,
    });
  }
}

/** Grows `buffer` to at least `bytes` (within its maximum). */
function reserve(buffer: GrowableBuffer, bytes: number): void {
  if (buffer.byteLength >= bytes) return;
  try {
    buffer.grow(bytes);
  } catch (cause) {
    // Another worker may have grown the shared words past `bytes` in between: that is success.
    if (buffer.byteLength < bytes) throw cause;
  }
}

function logView(log: DirtyLog): DataView {
  const view =
    log instanceof Uint8Array || log instanceof BigUint64Array
      ? new DataView(log.buffer, log.byteOffset, log.byteLength)
      : log instanceof ArrayBuffer || isSharedArrayBuffer(log)
        ? new DataView(log)
        : undefined;
  if (view === undefined) {
    throw new BitmapError('ERR_BITMAP_INVALID', `a dirty log is a BigUint64Array, Uint8Array or ArrayBuffer, got ${describe(log)}`);
  }
  if (view.byteLength % 8 !== 0) {
    throw new BitmapError('ERR_BITMAP_INVALID', `a dirty log is whole 64-bit words, got ${view.byteLength} bytes`, {
      length: view.byteLength,
    });
  }
  return view;
}

function popcount(v: number): number {
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}
