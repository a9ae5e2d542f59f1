/**
 * Scatter-gather buffers over the guest memory a descriptor chain names: IoVecBuffer for the
 * device-readable part, IoVecBufferMut for the device-writable part. Each is a list of Uint8Array
 * views straight into guest memory, so copies and fd I/O (readv/writev) touch no other buffer.
 */
import { type MemoryRegionAddress, validateIndex } from '../address/address.js';
import { type Bitmap, NO_BITMAP } from '../bitmap/bitmap.js';
import { validateBuffer } from '../bytes/access.js';
import { type FilePosition, transfer, validateFd, validatePosition } from '../bytes/fd-io.js';
import { VolatileMemoryError } from '../bytes/errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { VolatileSlice } from '../volatile/slice.js';
import type { Descriptor, DescriptorChain } from './chain.js';
import { VirtioError } from './errors.js';

/** The most views one readv/writev takes (Linux IOV_MAX). */
export const IOV_MAX = 1024;
const MAX_U32 = 0xffff_ffff;

/** What {@link IoVecBufferMut.appendChain} added: one chain's share of the buffer. */
export interface ParsedChain {
  /** The chain's head index, for the used ring (-1 for the parts of {@link IoVecBufferMut.fromBytes}). */
  readonly head: number;
  /** Its bytes. */
  readonly length: number;
  /** Its views (a descriptor spanning two regions gives two). */
  readonly viewCount: number;
}

/** The readable and writable parts of one chain (see {@link splitChain}). */
export interface ReaderWriter {
  /** The chain's head index. */
  readonly head: number;
  /** The device-readable descriptors (e.g. a request header and data). */
  readonly reader: IoVecBuffer;
  /** The device-writable descriptors (e.g. data and a status byte). */
  readonly writer: IoVecBufferMut;
}

/**
 * The device-readable buffers of a descriptor chain.
 *
 * Every descriptor's whole range was checked to be guest memory when the buffer was built. The
 * views stay valid for the request's life: close a backend only once the requests over it are
 * done (views of a closed one are empty, and transfers through them come up short); after a
 * WebAssembly memory grows, build the buffer again.
 */
export class IoVecBuffer {
  readonly #views: Uint8Array[];
  /** Total bytes (at most 2^32 - 1). */
  readonly length: number;

  private constructor(views: Uint8Array[], length: number) {
    this.#views = views;
    this.length = length;
  }

  /**
   * The buffer of a chain that has only device-readable descriptors.
   *
   * @throws {VirtioError} `ERR_IOVEC_WRITE_ONLY`, `ERR_IOVEC_OVERFLOW`, or any chain error.
   */
  static fromChain(chain: DescriptorChain): IoVecBuffer {
    const descs = chain.descriptors();
    checkDirection(chain, descs, false);
    return IoVecBuffer._fromDescriptors(chain, descs);
  }

  /** A buffer over plain byte arrays: for device models tested without guest memory. */
  static fromBytes(parts: readonly Uint8Array[]): IoVecBuffer {
    for (const p of parts) validateBuffer(p);
    let length = 0;
    for (const p of parts) length = checkTotal(length + p.length);
    return new IoVecBuffer([...parts], length);
  }

  /** @internal The buffer over `descs[from, to)`, already checked by their chain. */
  static _fromDescriptors(chain: DescriptorChain, descs: readonly Descriptor[], from = 0, to = descs.length): IoVecBuffer {
    const length = totalLength(descs, from, to, 0);
    const slices = sliceAll(chain.memory, descs, from, to);
    const views = new Array<Uint8Array>(slices.length);
    for (let i = 0; i < slices.length; i++) views[i] = slices[i].view('read');
    return new IoVecBuffer(views, length);
  }

  /** How many views (iovecs) the buffer has. */
  get viewCount(): number {
    return this.#views.length;
  }

  /**
   * The views, in order: what a writev would take. Do not write through them. The array is a
   * frozen copy: changing it cannot change the buffer.
   */
  views(): readonly Uint8Array[] {
    return Object.freeze([...this.#views]);
  }

  /**
   * Copies up to `buf.length` bytes from `offset` into `buf`; returns how many (0 at or past
   * the end).
   */
  readAt(offset: number, buf: Uint8Array): number {
    validateIndex(offset, 'offset');
    validateBuffer(buf);
    return copy(this.#views, 0, offset, buf, false);
  }

  /**
   * Fills `buf` from `offset`.
   *
   * @throws {VirtioError} `ERR_IOVEC_OUT_OF_BOUNDS` when `offset >= length`;
   *   `ERR_IOVEC_PARTIAL_BUFFER` when the buffer ends first (`completed` bytes of `buf` are filled).
   */
  readExactAt(offset: number, buf: Uint8Array): void {
    checkOffset(offset, this.length);
    const n = this.readAt(offset, buf);
    if (n !== buf.length) throw partial(offset, buf.length, n);
  }

  /**
   * Writes up to `length` bytes from `offset` to `fd` with one writev over the guest views (at
   * most {@link IOV_MAX} of them), retried on EINTR. Returns the bytes written: fewer than asked
   * is a partial transfer, to be continued by the caller.
   *
   * @param position - File offset, or `null` for the fd's current position.
   * @throws {VirtioError} `ERR_IOVEC_IO` with the system error as `cause`.
   */
  writeToFd(fd: number, offset: number, length: number, position: FilePosition = null): number {
    return fdTransfer(this.#views, 0, fd, offset, length, position, false);
  }
}

/**
 * Device-writable buffers: one chain's, or several chains appended one after another (a ring
 * bounded by `capacity` views, as a network device that fills many receive chains needs).
 *
 * **Dirty pages.** The guest pages behind a chain are marked dirty when it is appended, before
 * any view of them exists, and marked again after the bytes land: a harvest that runs between
 * the two (a disk's readv can take milliseconds) takes the first mark and copies the old page,
 * and only the second one makes the next harvest see the new bytes. {@link IoVecBufferMut.writeAt},
 * {@link IoVecBufferMut.writeAllAt} and {@link IoVecBufferMut.readFromFd} mark what they wrote
 * themselves; whoever writes through {@link IoVecBufferMut.views} (a readv of its own, an
 * asynchronous disk) calls {@link IoVecBufferMut.markWritten} once the bytes are there, as
 * virtio-blk does when a request completes.
 *
 * Appending checks the whole chain first: a broken descriptor anywhere leaves the buffer (and
 * the dirty bitmap) as it was.
 */
export class IoVecBufferMut {
  /** The most views the buffer holds. */
  readonly capacity: number;
  #views: Uint8Array[] = [];
  /** The dirty bitmap behind each view, offsets from the view's first byte. */
  #bitmaps: Bitmap[] = [];
  /** Index of the first live view in `#views` (dropped chains leave a prefix behind). */
  #start = 0;
  #chains: ParsedChain[] = [];
  #length = 0;

  /** An empty buffer holding at most `capacity` views (a queue's size is the natural bound). */
  constructor(capacity = 256) {
    this.capacity = validateIndex(capacity, 'capacity');
  }

  /**
   * The buffer of one chain that has only device-writable descriptors, its capacity exactly the
   * chain's views.
   *
   * @throws {VirtioError} as {@link appendChain}, but never `ERR_IOVEC_FULL`.
   */
  static fromChain(chain: DescriptorChain): IoVecBufferMut {
    const descs = chain.descriptors();
    checkDirection(chain, descs, true);
    return IoVecBufferMut._fromDescriptors(chain, descs, 0, descs.length);
  }

  /** A buffer over plain byte arrays: for device models tested without guest memory. */
  static fromBytes(parts: readonly Uint8Array[]): IoVecBufferMut {
    for (const p of parts) validateBuffer(p);
    let length = 0;
    for (const p of parts) length = checkTotal(length + p.length);
    const b = new IoVecBufferMut(parts.length);
    for (const p of parts) {
      b.#views.push(p);
      b.#bitmaps.push(NO_BITMAP);
    }
    b.#addChain(-1, parts.length, length);
    return b;
  }

  /** @internal The buffer over `descs[from, to)`, already checked by their chain. */
  static _fromDescriptors(chain: DescriptorChain, descs: readonly Descriptor[], from: number, to: number): IoVecBufferMut {
    const length = totalLength(descs, from, to, 0);
    const slices = sliceAll(chain.memory, descs, from, to);
    const b = new IoVecBufferMut(slices.length);
    b.#pushSlices(chain.head, slices, length);
    return b;
  }

  /** Total bytes over all chains (at most 2^32 - 1). */
  get length(): number {
    return this.#length;
  }

  /** How many views the buffer has. */
  get viewCount(): number {
    return this.#views.length - this.#start;
  }

  /** How many chains the buffer has. */
  get chainCount(): number {
    return this.#chains.length;
  }

  /**
   * The views, in order: what a readv would take (a frozen copy: changing it cannot change the
   * buffer). Writes through them go unseen: call {@link IoVecBufferMut.markWritten} when they are done.
   */
  views(): readonly Uint8Array[] {
    return Object.freeze(this.#views.slice(this.#start));
  }

  /**
   * Records that bytes `[offset, offset + length)` of the buffer were written through its views
   * (by a readv of the caller's, a device's DMA model, ...): marks their guest pages dirty now,
   * after the write, so that a harvest that ran while the write was under way does not keep the
   * old page. Call it when the write completes, before the chain is returned to the guest.
   *
   * @throws {VirtioError} `ERR_IOVEC_OUT_OF_BOUNDS` when the range passes the end of the buffer
   *   (nothing is marked).
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for an offset or length that is not a
   *   non-negative safe integer.
   */
  markWritten(offset: number, length: number): void {
    validateIndex(offset, 'offset');
    validateIndex(length, 'length');
    if (offset + length > this.#length) {
      throw new VirtioError('ERR_IOVEC_OUT_OF_BOUNDS', `bytes [${offset}, ${offset + length}) pass the end of the buffer of ${this.#length} bytes`, {
        address: offset,
        length: this.#length,
      });
    }
    this.#mark(offset, length);
  }

  /** Marks the guest pages behind bytes `[offset, offset + length)` (in range) dirty. */
  #mark(offset: number, length: number): void {
    let skip = offset;
    let left = length;
    for (let i = this.#start; i < this.#views.length && left > 0; i++) {
      const n = this.#views[i].length;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      const m = Math.min(n - skip, left);
      this.#bitmaps[i].markDirty(skip, m);
      left -= m;
      skip = 0;
    }
  }

  /**
   * Appends a chain of device-writable descriptors after the ones already held.
   *
   * @throws {VirtioError} `ERR_IOVEC_READ_ONLY`, `ERR_IOVEC_OVERFLOW` (total past 2^32 - 1),
   *   `ERR_IOVEC_FULL` (more than `capacity` views), `ERR_IOVEC_READ_ONLY_MEMORY` (a buffer in
   *   ROM), or any chain error; the buffer is unchanged.
   */
  appendChain(chain: DescriptorChain): ParsedChain {
    const descs = chain.descriptors();
    checkDirection(chain, descs, true);
    const length = totalLength(descs, 0, descs.length, this.#length) - this.#length;
    const slices = sliceAll(chain.memory, descs, 0, descs.length);
    if (this.viewCount + slices.length > this.capacity) {
      throw new VirtioError(
        'ERR_IOVEC_FULL',
        `chain ${chain.head} needs ${slices.length} views; ${this.capacity - this.viewCount} of ${this.capacity} are free`,
        { index: chain.head },
      );
    }
    return this.#pushSlices(chain.head, slices, length);
  }

  /** Appends the slices' views, marking their pages dirty first. */
  #pushSlices(head: number, slices: readonly VolatileSlice[], length: number): ParsedChain {
    if (slices.some((s) => s.readOnly)) {
      throw new VirtioError('ERR_IOVEC_READ_ONLY_MEMORY', `chain ${head} has a device-writable buffer in read-only guest memory`, {
        index: head,
      });
    }
    // Every view first: a slice that throws leaves the buffer as it was.
    const views = new Array<Uint8Array>(slices.length);
    for (let i = 0; i < slices.length; i++) views[i] = slices[i].view('write');
    for (let i = 0; i < slices.length; i++) {
      this.#views.push(views[i]);
      this.#bitmaps.push(slices[i].bitmap);
    }
    return this.#addChain(head, slices.length, length);
  }

  /** Records a chain whose `viewCount` views were just pushed. */
  #addChain(head: number, viewCount: number, length: number): ParsedChain {
    const parsed: ParsedChain = { head, length, viewCount };
    this.#chains.push(parsed);
    this.#length += length;
    return parsed;
  }

  /** Removes the oldest chain (the one the device filled first); `undefined` when empty. */
  dropChainFront(): ParsedChain | undefined {
    const c = this.#chains.shift();
    if (c === undefined) return undefined;
    this.#start += c.viewCount;
    this.#length -= c.length;
    // Compact once the dead prefix is as long as the live part: amortised O(1) per view.
    if (this.#start >= this.#views.length - this.#start) {
      this.#views = this.#views.slice(this.#start);
      this.#bitmaps = this.#bitmaps.slice(this.#start);
      this.#start = 0;
    }
    return c;
  }

  /** Removes the newest chain (e.g. to give it back with `undoPop`); `undefined` when empty. */
  dropChainBack(): ParsedChain | undefined {
    const c = this.#chains.pop();
    if (c === undefined) return undefined;
    this.#views.length -= c.viewCount;
    this.#bitmaps.length -= c.viewCount;
    this.#length -= c.length;
    return c;
  }

  /** Drops every chain. */
  clear(): void {
    this.#views = [];
    this.#bitmaps = [];
    this.#start = 0;
    this.#chains = [];
    this.#length = 0;
  }

  /**
   * Copies up to `buf.length` bytes of `buf` into the buffer at `offset`; returns how many (0 at
   * or past the end). The bytes copied are marked dirty after they land.
   */
  writeAt(offset: number, buf: Uint8Array): number {
    validateIndex(offset, 'offset');
    validateBuffer(buf);
    const n = copy(this.#views, this.#start, offset, buf, true);
    this.#mark(offset, n);
    return n;
  }

  /**
   * Writes all of `buf` at `offset`, or nothing.
   *
   * @throws {VirtioError} `ERR_IOVEC_OUT_OF_BOUNDS` when `offset >= length`;
   *   `ERR_IOVEC_PARTIAL_BUFFER` (`completed` 0) when `buf` does not fit (or, `completed` what was
   *   written, when the memory behind the buffer was closed).
   */
  writeAllAt(offset: number, buf: Uint8Array): void {
    checkOffset(offset, this.#length);
    validateBuffer(buf);
    if (buf.length > this.#length - offset) throw partial(offset, buf.length, 0);
    // Short only when memory behind a view went away (a backend closed mid-request).
    const n = this.writeAt(offset, buf);
    if (n !== buf.length) throw partial(offset, buf.length, n);
  }

  /** Copies up to `buf.length` bytes from `offset` into `buf` (reads back what was written). */
  readAt(offset: number, buf: Uint8Array): number {
    validateIndex(offset, 'offset');
    validateBuffer(buf);
    return copy(this.#views, this.#start, offset, buf, false);
  }

  /**
   * Reads up to `length` bytes from `fd` into the buffer at `offset` with one readv over the guest
   * views (at most {@link IOV_MAX}), retried on EINTR. Returns the bytes read: fewer than asked
   * is a partial transfer (0: end of file). The bytes read are marked dirty after they land.
   *
   * @param position - File offset, or `null` for the fd's current position.
   * @throws {VirtioError} `ERR_IOVEC_IO` with the system error as `cause`.
   */
  readFromFd(fd: number, offset: number, length: number, position: FilePosition = null): number {
    const n = fdTransfer(this.#views, this.#start, fd, offset, length, position, true);
    this.#mark(offset, n);
    return n;
  }
}

/**
 * Splits a chain into its readable head and writable tail, the shape of requests that carry a
 * header and data out and a status back (virtio-blk, virtio-scsi). The chain is checked whole
 * before either buffer exists; readable after writable is already refused by the chain.
 *
 * @throws {VirtioError} `ERR_IOVEC_OVERFLOW`, `ERR_IOVEC_READ_ONLY_MEMORY`, or any chain error.
 */
export function splitChain(chain: DescriptorChain): ReaderWriter {
  const descs = chain.descriptors();
  let k = 0;
  while (k < descs.length && !descs[k].writable) k++;
  // Check both totals before the writable pages are marked dirty.
  totalLength(descs, 0, k, 0);
  totalLength(descs, k, descs.length, 0);
  return {
    head: chain.head,
    reader: IoVecBuffer._fromDescriptors(chain, descs, 0, k),
    writer: IoVecBufferMut._fromDescriptors(chain, descs, k, descs.length),
  };
}

/** Throws unless every descriptor goes the one way (device-writable or device-readable). */
function checkDirection(chain: DescriptorChain, descs: readonly Descriptor[], writable: boolean): void {
  const d = descs.find((x) => x.writable !== writable);
  if (d === undefined) return;
  throw new VirtioError(
    writable ? 'ERR_IOVEC_READ_ONLY' : 'ERR_IOVEC_WRITE_ONLY',
    `descriptor ${d.index} of chain ${chain.head} is device-${writable ? 'readable' : 'writable'}`,
    { index: d.index, address: d.addr, length: d.len },
  );
}

/** The slices covering the ranges of `descs[from, to)`, in order (ranges re-checked here). */
function sliceAll(mem: GuestMemory, descs: readonly Descriptor[], from: number, to: number): VolatileSlice[] {
  const out: VolatileSlice[] = [];
  for (let i = from; i < to; i++) {
    const { addr, len } = descs[i];
    if (len === 0) continue;
    const r = mem.findRegion(addr);
    if (r !== undefined && addr + len <= r.end) out.push(r.getSlice((addr - r.start) as MemoryRegionAddress, len));
    else for (const s of mem.getSlices(addr, len)) out.push(s);
  }
  return out;
}

/** `base` plus the lengths of `descs[from, to)`, refused past u32. */
function totalLength(descs: readonly Descriptor[], from: number, to: number, base: number): number {
  let n = base;
  for (let i = from; i < to; i++) n = checkTotal(n + descs[i].len);
  return n;
}

function checkTotal(n: number): number {
  if (n > MAX_U32) {
    throw new VirtioError('ERR_IOVEC_OVERFLOW', 'the buffer would hold more than 2^32 - 1 bytes', { length: n });
  }
  return n;
}

/** Copies between `buf` and the views from `offset`; returns the bytes moved. */
function copy(views: readonly Uint8Array[], start: number, offset: number, buf: Uint8Array, toViews: boolean): number {
  let done = 0;
  let skip = offset;
  for (let i = start; i < views.length && done < buf.length; i++) {
    const v = views[i];
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const n = Math.min(v.length - skip, buf.length - done);
    if (toViews) v.set(buf.subarray(done, done + n), skip);
    else buf.set(v.subarray(skip, skip + n), done);
    done += n;
    skip = 0;
  }
  return done;
}

/** One readv/writev between `fd` and the views' bytes `[offset, offset + length)`. */
function fdTransfer(
  views: readonly Uint8Array[],
  start: number,
  fd: number,
  offset: number,
  length: number,
  position: FilePosition,
  toViews: boolean,
): number {
  try {
    fd = validateFd(fd);
    position = validatePosition(position);
  } catch (err) {
    throw new VirtioError('ERR_INVALID_ARG', (err as Error).message);
  }
  validateIndex(offset, 'offset');
  validateIndex(length, 'length');
  const iov: Uint8Array[] = [];
  let want = length;
  let skip = offset;
  for (let i = start; i < views.length && want > 0 && iov.length < IOV_MAX; i++) {
    const v = views[i];
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const n = Math.min(v.length - skip, want);
    iov.push(skip === 0 && n === v.length ? v : v.subarray(skip, skip + n));
    want -= n;
    skip = 0;
  }
  if (iov.length === 0) return 0;
  try {
    return transfer(fd, iov, position, toViews, 0);
  } catch (err) {
    if (!(err instanceof VolatileMemoryError)) throw err;
    throw new VirtioError('ERR_IOVEC_IO', err.message, { cause: err.cause, completed: 0 });
  }
}

function checkOffset(offset: number, length: number): void {
  validateIndex(offset, 'offset');
  if (offset >= length) {
    throw new VirtioError('ERR_IOVEC_OUT_OF_BOUNDS', `offset ${offset} is not inside the buffer of ${length} bytes`, {
      address: offset,
      length,
    });
  }
}

function partial(offset: number, expected: number, completed: number): VirtioError {
  return new VirtioError(
    'ERR_IOVEC_PARTIAL_BUFFER',
    `${expected} bytes at offset ${offset} do not fit the buffer; ${completed} moved`,
    { address: offset, expected, completed },
  );
}
