import { type ErrorDetails, GuestmemError } from '../errors.js';

/** Codes of {@link VolatileMemoryError}. */
export type VolatileMemoryErrorCode =
  /** An access that does not lie inside the slice or region. */
  | 'ERR_OUT_OF_BOUNDS'
  /** An exact transfer that could not move every byte; `expected` and `completed` say how far it got. */
  | 'ERR_PARTIAL_BUFFER'
  /** An atomic access that is not naturally aligned (or spans two regions). */
  | 'ERR_MISALIGNED'
  /** An atomic access to memory that no other thread can see. */
  | 'ERR_NOT_SHARED'
  /** A value that does not fit the type it is written as. */
  | 'ERR_VALUE_OUT_OF_RANGE'
  /** A 64-bit value read as a number that is not a safe integer. */
  | 'ERR_UNSAFE_INTEGER'
  /** A write to read-only memory; nothing was written. */
  | 'ERR_READ_ONLY'
  /** A buffer whose memory is gone (a detached ArrayBuffer). */
  | 'ERR_DETACHED'
  /** A file-descriptor transfer failed; `cause` is the system error, `completed` what was moved. */
  | 'ERR_IO'
  /** An argument of the wrong kind: not a Uint8Array, not an fd, not a file position. */
  | 'ERR_INVALID_ARG'
  /** A struct layout that cannot be built. */
  | 'ERR_INVALID_LAYOUT'
  /** A count of elements whose size in bytes is not even a safe integer; `count` and `elementSize` say which. */
  | 'ERR_TOO_BIG';

/** Facts a {@link VolatileMemoryError} may carry beyond those of every guestmem error. */
export interface VolatileMemoryErrorDetails extends ErrorDetails {
  /** Becomes the error's `count`. */
  count?: number | undefined;
  /** Becomes the error's `elementSize`. */
  elementSize?: number | undefined;
}

/** Errors of the bytes and volatile layer: bounds, values, atomics and fd transfers. */
export class VolatileMemoryError extends GuestmemError<VolatileMemoryErrorCode> {
  /** For `ERR_TOO_BIG`: how many elements were asked for. */
  readonly count: number | undefined;
  /** For `ERR_TOO_BIG`: the size of one element in bytes. */
  readonly elementSize: number | undefined;

  constructor(code: VolatileMemoryErrorCode, message: string, details: VolatileMemoryErrorDetails = {}) {
    super(code, message, details);
    this.count = details.count;
    this.elementSize = details.elementSize;
  }
}
