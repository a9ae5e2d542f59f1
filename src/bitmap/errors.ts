import { GuestmemError } from '../errors.js';

/** Codes of {@link BitmapError}. */
export type BitmapErrorCode =
  /** A range, offset or page lies outside what the bitmap covers (also: a dirty log marking pages beyond it). */
  | 'ERR_BITMAP_OUT_OF_RANGE'
  /** A geometry or input the bitmap cannot take: page size, length, dirty log, shared description. */
  | 'ERR_BITMAP_INVALID'
  /** A dirty log too short to cover every page it is merged into (the rest would be lost silently). */
  | 'ERR_BITMAP_LOG_TOO_SHORT'
  /** A non-shared bitmap was asked for a description that other workers could use. */
  | 'ERR_BITMAP_NOT_SHARED'
  /** A shared bitmap was asked to grow beyond the capacity it reserved when it was created. */
  | 'ERR_BITMAP_CAPACITY';

/** Errors of dirty-page tracking. */
export class BitmapError extends GuestmemError<BitmapErrorCode> {}
