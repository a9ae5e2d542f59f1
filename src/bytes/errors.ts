import { GuestmemError } from '../errors.js';

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
  | 'ERR_INVALID_LAYOUT';

/** Errors of the bytes and volatile layer: bounds, values, atomics and fd transfers. */
export class VolatileMemoryError extends GuestmemError<VolatileMemoryErrorCode> {}
