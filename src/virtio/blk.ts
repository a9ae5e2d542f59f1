/**
 * A virtio-blk device's request handling (virtio 1.2, section 5.2.6): header, data and status
 * of each chain, checked against the disk's capacity before any byte moves, over a
 * {@link BlockDisk}.
 */
import { encodeBlkConfig, SECTOR_SIZE, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES, type VirtioBlkConfig } from './blk-config.js';
import type { BlockDisk } from './blk-disk.js';
import type { DescriptorChain } from './chain.js';
import { VirtioError } from './errors.js';
import { type IoVecBuffer, type IoVecBufferMut, splitChain } from './iovec.js';
import { type SplitQueue, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from './queue.js';

/** Request type: read sectors into the writable buffers. */
export const VIRTIO_BLK_T_IN = 0;
/** Request type: write the readable data to sectors. */
export const VIRTIO_BLK_T_OUT = 1;
/** Request type: make completed writes durable. */
export const VIRTIO_BLK_T_FLUSH = 4;
/** Request type: answer the device id (20 bytes). */
export const VIRTIO_BLK_T_GET_ID = 8;
/** Request type: the segments' data is no longer needed. */
export const VIRTIO_BLK_T_DISCARD = 11;
/** Request type: the segments read back as zeroes. */
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
/** Status: the request succeeded. */
export const VIRTIO_BLK_S_OK = 0;
/** Status: the request failed (bad sectors or lengths, a disk error, a read-only disk). */
export const VIRTIO_BLK_S_IOERR = 1;
/** Status: the request type or a flag is not supported. */
export const VIRTIO_BLK_S_UNSUPP = 2;
/** Bytes of the request header: le32 type, le32 reserved, le64 sector. */
export const BLK_HEADER_SIZE = 16;
/** Bytes of the GET_ID answer. */
export const VIRTIO_BLK_ID_BYTES = 20;
/** Bytes of one discard / write-zeroes segment: le64 sector, le32 num_sectors, le32 flags. */
export const BLK_SEGMENT_SIZE = 16;
/** Segment flag: the device may unmap the zeroed range. */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

/** Options of a {@link VirtioBlk}. */
export interface VirtioBlkOptions {
  /** The GET_ID answer: up to 20 bytes (a string is UTF-8 encoded). */
  id?: string | Uint8Array;
  /** The queue size, for seg_max (default 256). */
  queueSize?: number;
  /** Most sectors of one discard / write-zeroes segment (default 2^22: 2 GiB). */
  maxDiscardSectors?: number;
  /** Most segments of one discard / write-zeroes request (default 1). */
  maxDiscardSegments?: number;
}

/** What one request came to. */
export interface BlkOutcome {
  /** The chain's head index. */
  readonly head: number;
  /** The status written, or `undefined` when the chain had no status byte to write it to. */
  readonly status: number | undefined;
  /** Bytes written into the chain's writable buffers: the used ring's `len`. */
  readonly usedLen: number;
  /** Why the status is not OK. */
  readonly error?: VirtioError | undefined;
}

/** A request whose status is decided: the failure to report, and the status it gets. */
class RequestFailure {
  constructor(
    readonly status: number,
    readonly error: VirtioError,
  ) {}
}

/**
 * The request side of a virtio-blk device.
 *
 * {@link handle} turns one chain into disk operations and a status byte; {@link processQueue}
 * does that for every available chain. Driver mistakes become a status (IOERR for bad sectors or
 * lengths, UNSUPP for unknown types and flags) plus the {@link VirtioError} saying why; a chain
 * too broken to carry a status is reported used with length 0. Every range is checked against
 * the capacity, and every discard / write-zeroes segment of a request, before the disk is
 * touched, so a refused request changes nothing on the disk.
 *
 * @example
 * import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
 * import { tmpdir } from 'node:os';
 * const dir = mkdtempSync(`${tmpdir()}/blk-`);
 * const fd = openSync(`${dir}/disk.img`, 'w+');
 * ftruncateSync(fd, 1 << 20);
 * const blk = new VirtioBlk(new FdDisk(fd), { id: 'disk0' });
 * decodeBlkConfig(blk.config()).capacity; // => 2048
 *
 * const mem = GuestMemory.fromRanges([[GuestAddress(0), 0x20000]]);
 * const driver = new VirtqueueDriver(mem, { size: 16, dataBase: GuestAddress(0x10000), dataSize: 0x10000 });
 * const queue = new SplitQueue(mem, driver.queueConfig());
 * const header = new Uint8Array(16);
 * header[0] = VIRTIO_BLK_T_GET_ID;
 * const posted = driver.post([header], [VIRTIO_BLK_ID_BYTES, 1]);
 * blk.processQueue(queue); // => 1
 * driver.read(posted.writable[1]); // => Uint8Array.of(VIRTIO_BLK_S_OK)
 * new TextDecoder().decode(driver.read(posted.writable[0]).subarray(0, 5)); // => 'disk0'
 * closeSync(fd);
 * rmSync(dir, { recursive: true });
 */
export class VirtioBlk {
  /** Where the sectors are stored. */
  readonly disk: BlockDisk;
  /** Capacity in sectors. */
  readonly capacity: number;
  readonly #id: Uint8Array;
  readonly #queueSize: number;
  readonly #maxDiscardSectors: number;
  readonly #maxDiscardSegments: number;

  constructor(disk: BlockDisk, options: VirtioBlkOptions = {}) {
    this.disk = disk;
    this.capacity = Math.floor(disk.size / SECTOR_SIZE);
    const id = typeof options.id === 'string' ? new TextEncoder().encode(options.id) : (options.id ?? new Uint8Array(0));
    if (id.length > VIRTIO_BLK_ID_BYTES) {
      throw new VirtioError('ERR_INVALID_ARG', `a virtio-blk id has at most ${VIRTIO_BLK_ID_BYTES} bytes, got ${id.length}`);
    }
    this.#id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.#id.set(id);
    this.#queueSize = checkU32(options.queueSize ?? 256, 'queueSize');
    this.#maxDiscardSectors = checkU32(options.maxDiscardSectors ?? 1 << 22, 'maxDiscardSectors');
    this.#maxDiscardSegments = checkU32(options.maxDiscardSegments ?? 1, 'maxDiscardSegments');
  }

  /** The device feature bits to offer (ring features included). */
  get features(): bigint {
    let f = 0n;
    for (const bit of [VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD,
      VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX, VIRTIO_F_VERSION_1]) {
      f |= 1n << BigInt(bit);
    }
    if (this.disk.readOnly) f |= 1n << BigInt(VIRTIO_BLK_F_RO);
    return f;
  }

  /** The configuration fields this device reports. */
  configValues(): Partial<VirtioBlkConfig> {
    return {
      capacity: this.capacity,
      seg_max: Math.max(1, this.#queueSize - 2),
      blk_size: SECTOR_SIZE,
      num_queues: 1,
      max_discard_sectors: this.#maxDiscardSectors,
      max_discard_seg: this.#maxDiscardSegments,
      discard_sector_alignment: 1,
      max_write_zeroes_sectors: this.#maxDiscardSectors,
      max_write_zeroes_seg: this.#maxDiscardSegments,
      write_zeroes_may_unmap: 0,
    };
  }

  /** The configuration space bytes (`struct virtio_blk_config`). */
  config(): Uint8Array {
    return encodeBlkConfig(this.configValues());
  }

  /**
   * Handles the available chains of `queue`, at most `limit` of them (default: one queue's
   * worth, so that a driver that keeps posting cannot keep the caller here), and publishes the
   * used entries in one batch. Returns how many chains it handled; the caller then asks
   * `queue.needsNotification()`, and `queue.availableCount()` whether to come back.
   *
   * @throws {VirtioError} queue-level driver errors (`ERR_VIRTQ_AVAIL_COUNT`, `ERR_DESC_INDEX`
   *   for a head outside the table): the device needs a reset. Entries handled before stay used.
   */
  processQueue(queue: SplitQueue, limit: number = queue.size): number {
    let n = 0;
    try {
      for (let chain = queue.pop(); chain !== undefined; chain = n < limit ? queue.pop() : undefined) {
        const out = this.handle(chain);
        queue.pushUsed(out.head, out.usedLen);
        n++;
      }
    } finally {
      if (n > 0) queue.publishUsed();
    }
    return n;
  }

  /** Carries out the request of one chain and writes its status byte. */
  handle(chain: DescriptorChain): BlkOutcome {
    let reader: IoVecBuffer;
    let writer: IoVecBufferMut;
    try {
      ({ reader, writer } = splitChain(chain));
    } catch (err) {
      if (!(err instanceof VirtioError)) throw err;
      return { head: chain.head, status: undefined, usedLen: 0, error: err };
    }
    if (writer.length === 0) {
      const error = new VirtioError('ERR_BLK_REQUEST', `request ${chain.head} has no writable status byte`, { index: chain.head });
      return { head: chain.head, status: undefined, usedLen: 0, error };
    }
    const statusAt = writer.length - 1;
    let status: number = VIRTIO_BLK_S_OK;
    let written = 0;
    let error: VirtioError | undefined;
    try {
      written = this.#execute(chain.head, reader, writer, statusAt);
    } catch (err) {
      if (err instanceof RequestFailure) {
        status = err.status;
        error = err.error;
      } else {
        status = VIRTIO_BLK_S_IOERR;
        error = err instanceof VirtioError && err.code === 'ERR_BLK_IO'
          ? err
          : new VirtioError('ERR_BLK_IO', `request ${chain.head}: the disk failed: ${(err as Error).message}`, { cause: err, index: chain.head });
      }
    }
    // The disk may have written through the views (a readv), also before failing: mark the
    // writable data again now that the transfer is over, in case a harvest took the pages
    // while it was under way (they were marked when the buffer was built, so this adds none).
    if (statusAt > 0) writer.markWritten(0, statusAt);
    writer.writeAt(statusAt, Uint8Array.of(status));
    return { head: chain.head, status, usedLen: written + 1, error };
  }

  /** Runs the request; returns the data bytes written into the writable part. */
  #execute(head: number, reader: IoVecBuffer, writer: IoVecBufferMut, dataLen: number): number {
    if (reader.length < BLK_HEADER_SIZE) {
      fail(VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST', `request ${head}: the header needs 16 readable bytes, got ${reader.length}`, head);
    }
    const header = new Uint8Array(BLK_HEADER_SIZE);
    reader.readAt(0, header);
    const dv = new DataView(header.buffer);
    const type = dv.getUint32(0, true);
    const sector = dv.getBigUint64(8, true);
    const disk = this.disk;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        const position = this.#range(head, sector, dataLen);
        disk.read(writer, 0, dataLen, position);
        return dataLen;
      }
      case VIRTIO_BLK_T_OUT: {
        const len = reader.length - BLK_HEADER_SIZE;
        this.#writable(head);
        const position = this.#range(head, sector, len);
        disk.write(reader, BLK_HEADER_SIZE, len, position);
        return 0;
      }
      case VIRTIO_BLK_T_FLUSH:
        disk.flush();
        return 0;
      case VIRTIO_BLK_T_GET_ID: {
        return writer.writeAt(0, this.#id.subarray(0, Math.min(VIRTIO_BLK_ID_BYTES, dataLen)));
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        const zero = type === VIRTIO_BLK_T_WRITE_ZEROES;
        this.#writable(head);
        const segments = this.#segments(head, reader, zero);
        for (const [position, length] of segments) {
          if (zero) disk.writeZeroes(position, length);
          else disk.discard(position, length);
        }
        return 0;
      }
      default:
        return fail(VIRTIO_BLK_S_UNSUPP, 'ERR_BLK_UNSUPPORTED', `request ${head}: type ${type} is not supported`, head);
    }
  }

  #writable(head: number): void {
    if (this.disk.readOnly) fail(VIRTIO_BLK_S_IOERR, 'ERR_BLK_UNSUPPORTED', `request ${head}: the disk is read-only`, head);
  }

  /** The byte position of `length` bytes at `sector`, after checking they are whole sectors inside the disk. */
  #range(head: number, sector: bigint, length: number): number {
    if (length % SECTOR_SIZE !== 0) {
      fail(VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST', `request ${head}: ${length} data bytes are not whole sectors`, head);
    }
    const count = length / SECTOR_SIZE;
    if (sector > BigInt(this.capacity) || Number(sector) + count > this.capacity) {
      fail(
        VIRTIO_BLK_S_IOERR,
        'ERR_BLK_SECTOR_RANGE',
        `request ${head}: sectors [${sector}, ${sector} + ${count}) pass the capacity of ${this.capacity}`,
        head,
      );
    }
    return Number(sector) * SECTOR_SIZE;
  }

  /** The byte ranges of a discard / write-zeroes request, every segment checked first. */
  #segments(head: number, reader: IoVecBuffer, zero: boolean): [number, number][] {
    const len = reader.length - BLK_HEADER_SIZE;
    const count = len / BLK_SEGMENT_SIZE;
    if (len === 0 || len % BLK_SEGMENT_SIZE !== 0) {
      fail(VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST', `request ${head}: ${len} bytes are not whole 16-byte segments`, head);
    }
    if (count > this.#maxDiscardSegments) {
      fail(VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST', `request ${head}: ${count} segments, at most ${this.#maxDiscardSegments}`, head);
    }
    const seg = new Uint8Array(BLK_SEGMENT_SIZE);
    const dv = new DataView(seg.buffer);
    const out: [number, number][] = [];
    for (let i = 0; i < count; i++) {
      reader.readAt(BLK_HEADER_SIZE + i * BLK_SEGMENT_SIZE, seg);
      const sector = dv.getBigUint64(0, true);
      const sectors = dv.getUint32(8, true);
      const flags = dv.getUint32(12, true);
      const allowed = zero ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
      if ((flags & ~allowed) !== 0) {
        fail(VIRTIO_BLK_S_UNSUPP, 'ERR_BLK_UNSUPPORTED', `request ${head}: segment ${i} has flags ${flags}`, head);
      }
      if (sectors > this.#maxDiscardSectors) {
        fail(VIRTIO_BLK_S_IOERR, 'ERR_BLK_REQUEST', `request ${head}: segment ${i} has ${sectors} sectors, at most ${this.#maxDiscardSectors}`, head);
      }
      out.push([this.#range(head, sector, sectors * SECTOR_SIZE), sectors * SECTOR_SIZE]);
    }
    return out;
  }
}

function checkU32(value: number, name: string): number {
  if (Number.isInteger(value) && value >= 1 && value <= 0xffff_ffff) return value;
  throw new VirtioError('ERR_INVALID_ARG', `${name} must be an integer from 1 to 2^32 - 1, got ${String(value)}`);
}

function fail(status: number, code: 'ERR_BLK_REQUEST' | 'ERR_BLK_SECTOR_RANGE' | 'ERR_BLK_UNSUPPORTED', message: string, index: number): never {
  throw new RequestFailure(status, new VirtioError(code, message, { index }));
}
