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
  /** A file could not be opened, read or written (the system error is the `cause`). */
  | 'ERR_SNAPSHOT_IO'
  /** An argument of the wrong kind. */
  | 'ERR_INVALID_ARG';

/** Errors of memory snapshots. */
export class SnapshotError extends GuestmemError<SnapshotErrorCode> {}
