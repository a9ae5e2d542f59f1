import { GuestmemError } from '../errors.js';

/** Codes of {@link RegionError}. */
export type RegionErrorCode =
  /** A region of zero bytes. */
  | 'ERR_REGION_EMPTY'
  /** A region whose end is not a safe integer. */
  | 'ERR_REGION_OVERFLOW'
  /** A region that asks for bytes its backend does not have. */
  | 'ERR_REGION_BACKEND_RANGE'
  /** A dirty bitmap that does not cover the whole region (writes past its end would go unmarked). */
  | 'ERR_REGION_BITMAP_RANGE'
  /** A writable region asked for over a backend that is read-only. */
  | 'ERR_REGION_READ_ONLY_BACKEND'
  /** An option of the wrong kind. */
  | 'ERR_INVALID_ARG';

/** Errors of the region layer. */
export class RegionError extends GuestmemError<RegionErrorCode> {}
