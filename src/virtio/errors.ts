import { type ErrorDetails, GuestmemError } from '../errors.js';

/** Codes of {@link VirtioError}. */
export type VirtioErrorCode =
  /** A queue size that is 0, above 32768 or not a power of two. */
  | 'ERR_VIRTQ_SIZE'
  /** A ring address without the alignment the split ring needs (16, 2, 4). */
  | 'ERR_VIRTQ_ALIGNMENT'
  /** A descriptor table or ring that does not lie wholly in guest memory (the used ring: in writable memory). */
  | 'ERR_VIRTQ_RING_ADDRESS'
  /** The driver's available index claims more new entries than the queue holds. */
  | 'ERR_VIRTQ_AVAIL_COUNT'
  /** A used entry for a head index that is not in the queue. */
  | 'ERR_VIRTQ_USED_HEAD'
  /** A head or `next` index outside the descriptor table (or indirect table). */
  | 'ERR_DESC_INDEX'
  /** A chain longer than the queue size: a loop, or a driver breaking the rules. */
  | 'ERR_DESC_CHAIN_TOO_LONG'
  /** A descriptor whose buffer is not wholly guest memory. */
  | 'ERR_DESC_ADDRESS'
  /** A descriptor whose address + length passes 2^53. */
  | 'ERR_DESC_OVERFLOW'
  /** A descriptor address (a u64 from the guest) that is not a safe integer. */
  | 'ERR_DESC_UNSAFE_ADDRESS'
  /** A device-readable descriptor after a device-writable one. */
  | 'ERR_DESC_READ_AFTER_WRITE'
  /** An indirect table whose length is 0, not a multiple of 16, or above the queue size. */
  | 'ERR_DESC_INDIRECT_LENGTH'
  /** An INDIRECT descriptor inside an indirect table. */
  | 'ERR_DESC_INDIRECT_NESTED'
  /** A descriptor with both INDIRECT and NEXT set. */
  | 'ERR_DESC_INDIRECT_NEXT'
  /** A device-writable descriptor where only readable ones may be (IoVecBuffer). */
  | 'ERR_IOVEC_WRITE_ONLY'
  /** A device-readable descriptor where only writable ones may be (IoVecBufferMut). */
  | 'ERR_IOVEC_READ_ONLY'
  /** A buffer whose total length would pass 2^32 - 1. */
  | 'ERR_IOVEC_OVERFLOW'
  /** A device-writable descriptor over read-only guest memory (ROM). */
  | 'ERR_IOVEC_READ_ONLY_MEMORY'
  /** More views than the IoVecBufferMut's capacity. */
  | 'ERR_IOVEC_FULL'
  /** An exact transfer that does not fit; `expected` and `completed` say how far it got. */
  | 'ERR_IOVEC_PARTIAL_BUFFER'
  /** An offset at or past the end of the buffer. */
  | 'ERR_IOVEC_OUT_OF_BOUNDS'
  /** A file-descriptor transfer failed; `cause` is the system error. */
  | 'ERR_IOVEC_IO'
  /** A virtio-blk request whose header or status descriptor is missing or too short. */
  | 'ERR_BLK_REQUEST'
  /** A virtio-blk request for sectors beyond the disk's capacity. */
  | 'ERR_BLK_SECTOR_RANGE'
  /** A virtio-blk request type or flag the device does not support, or a write to a read-only disk. */
  | 'ERR_BLK_UNSUPPORTED'
  /** A disk operation failed; `cause` is the system error. */
  | 'ERR_BLK_IO'
  /** An argument of the wrong kind or out of range. */
  | 'ERR_INVALID_ARG';

/** Facts attached to a {@link VirtioError}. */
export interface VirtioErrorDetails extends ErrorDetails {
  /** The descriptor (or head) index involved. */
  index?: number | undefined;
}

/**
 * Errors of the virtio layer: queue configuration, hostile descriptor chains, scatter-gather
 * buffers and virtio-blk requests. `address`/`length` name the guest range involved, `index`
 * the descriptor.
 */
export class VirtioError extends GuestmemError<VirtioErrorCode> {
  /** The descriptor (or head) index involved, if any. */
  readonly index: number | undefined;

  constructor(code: VirtioErrorCode, message: string, details: VirtioErrorDetails = {}) {
    super(code, message, details);
    this.index = details.index;
  }
}
