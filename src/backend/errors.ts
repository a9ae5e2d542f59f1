import { GuestmemError } from '../errors.js';

/** Codes of {@link BackendError}. */
export type BackendErrorCode =
  /** The backend was closed; its memory can no longer be reached. */
  | 'ERR_BACKEND_CLOSED'
  /** A size or offset that the backend cannot provide. */
  | 'ERR_BACKEND_SIZE'
  /** Memory that no other worker or process can see was asked for a shareable description. */
  | 'ERR_BACKEND_NOT_SHAREABLE'
  /** Shared memory was asked for where the environment has no SharedArrayBuffer (a page that is not cross-origin isolated). */
  | 'ERR_SHARED_MEMORY_UNAVAILABLE'
  /** An argument of the wrong kind. */
  | 'ERR_INVALID_ARG';

/** Errors of content backends. */
export class BackendError extends GuestmemError<BackendErrorCode> {}
