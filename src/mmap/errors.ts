import { type ErrorDetails, GuestmemError } from '../errors.js';

/** Codes of {@link MmapError}. */
export type MmapErrorCode =
  /** `MAP_FIXED` (or `MAP_FIXED_NOREPLACE`) was requested: guestmem never maps at a chosen address. */
  | 'ERR_MMAP_FIXED_FORBIDDEN'
  /** A file offset plus a length leaves the range of safe integers. */
  | 'ERR_MMAP_INVALID_OFFSET_LENGTH'
  /** The mapping would reach past the end of its file (touching those pages raises SIGBUS). */
  | 'ERR_MMAP_PAST_EOF'
  /** Two file-backed mappings cover the same bytes of one file. */
  | 'ERR_MMAP_OVERLAP'
  /** A system call failed; {@link MmapError.errno} and {@link MmapError.syscall} say which and why. */
  | 'ERR_MMAP_FAILED'
  /** An option or argument that is not a valid request (unknown flag, zero size, bad combination). */
  | 'ERR_MMAP_INVALID_ARGUMENT'
  /** A range outside the mapping, or not aligned to its pages. */
  | 'ERR_MMAP_RANGE'
  /** A change was asked of a read-only mapping. */
  | 'ERR_MMAP_READ_ONLY'
  /** A shared description that cannot be rebuilt here (wrong process, no fd, private memory). */
  | 'ERR_MMAP_NOT_SHAREABLE'
  /** The native addon cannot be loaded or used in this runtime; `cause` holds the reason. */
  | 'ERR_NATIVE_UNAVAILABLE';

/** Facts an {@link MmapError} may carry beyond those of every guestmem error. */
export interface MmapErrorDetails extends ErrorDetails {
  /** Becomes the error's `errno`. */
  errno?: string | undefined;
  /** Becomes the error's `syscall`. */
  syscall?: string | undefined;
}

/** Errors of native (mmap'd) memory: the vm-memory `MmapRegion` errors and system call failures. */
export class MmapError extends GuestmemError<MmapErrorCode> {
  /** For `ERR_MMAP_FAILED`: the errno's name, such as `'EINVAL'` or `'ENOMEM'`. */
  readonly errno: string | undefined;
  /** For `ERR_MMAP_FAILED`: the system call that failed, such as `'mmap'` or `'mlock'`. */
  readonly syscall: string | undefined;

  constructor(code: MmapErrorCode, message: string, details: MmapErrorDetails = {}) {
    super(code, message, details);
    this.errno = details.errno;
    this.syscall = details.syscall;
  }
}
