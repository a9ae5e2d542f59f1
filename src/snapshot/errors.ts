import { GuestmemError } from '../errors.js';

/** Codes of {@link SnapshotError}. */
export type SnapshotErrorCode =
  /** A layout file that is not a guestmem memory snapshot, or not of the kind asked for. */
  | 'ERR_SNAPSHOT_INVALID'
  /** A snapshot whose regions are not the target memory's regions. */
  | 'ERR_SNAPSHOT_LAYOUT_MISMATCH'
  /** A memory file shorter than its layout says. */
  | 'ERR_SNAPSHOT_TRUNCATED'
  /** A diff snapshot of memory with a region whose writes are not tracked. */
  | 'ERR_SNAPSHOT_UNTRACKED'
  /** A snapshot file that is not a regular file (a directory, a FIFO, a device, a socket), or a symbolic link where a file is replaced. */
  | 'ERR_SNAPSHOT_NOT_A_FILE'
  /** A layout file larger than `MAX_LAYOUT_BYTES` (`length` and `expected` say how much). */
  | 'ERR_SNAPSHOT_LAYOUT_TOO_BIG'
  /** A file could not be opened, read or written (the system error is the `cause`). */
  | 'ERR_SNAPSHOT_IO'
  /** An argument of the wrong kind. */
  | 'ERR_INVALID_ARG';

/** Errors of memory snapshots. */
export class SnapshotError extends GuestmemError<SnapshotErrorCode> {}
