import { type ErrorDetails, GuestmemError } from '../errors.js';

/** Codes of {@link VhostUserError}. */
export type VhostUserErrorCode =
  /** A system call failed; {@link VhostUserError.errno} and {@link VhostUserError.syscall} say which and why. */
  | 'ERR_VHOST_USER_SYSTEM'
  /** An argument of the wrong kind or out of range (a bad fd, an empty buffer). */
  | 'ERR_VHOST_USER_INVALID_ARG'
  /** A message that breaks the framing or layout rules: bad version, size, payload or request. */
  | 'ERR_VHOST_USER_MESSAGE'
  /** A message came with more or fewer file descriptors than its request takes. */
  | 'ERR_VHOST_USER_FDS'
  /** A memory table that cannot be used: overlapping, empty, too large or not mappable. */
  | 'ERR_VHOST_USER_MEM_TABLE'
  /** A ring address (frontend virtual or guest physical) outside the memory table. */
  | 'ERR_VHOST_USER_RING_ADDRESS'
  /** A vring index beyond the device's queues, or a vring setting out of range. */
  | 'ERR_VHOST_USER_VRING'
  /** A request the negotiated features or the session's state do not allow now. */
  | 'ERR_VHOST_USER_STATE'
  /** A dirty log that cannot be used (wrong size, no fd, not mappable). */
  | 'ERR_VHOST_USER_LOG'
  /**
   * A memory or log fd that is not sealed against shrinking (`F_SEAL_SHRINK`): mapping it would
   * let the front-end kill this process with SIGBUS. Refused unless the front-end is trusted
   * (`allowUnsealedMemory`).
   */
  | 'ERR_VHOST_USER_UNSEALED'
  /** The front-end did not open the session (SET_OWNER) within the negotiation timeout. */
  | 'ERR_VHOST_USER_TIMEOUT'
  /** The peer closed the connection, or it was closed here. */
  | 'ERR_VHOST_USER_CLOSED';

/** Facts a {@link VhostUserError} may carry beyond those of every guestmem error. */
export interface VhostUserErrorDetails extends ErrorDetails {
  /** The errno's name, for a failed system call. */
  errno?: string | undefined;
  /** The system call that failed. */
  syscall?: string | undefined;
  /** The vhost-user request number the error is about. */
  request?: number | undefined;
}

/** Errors of the vhost-user layer: its transport (sockets, eventfds) and its protocol. */
export class VhostUserError extends GuestmemError<VhostUserErrorCode> {
  /** For `ERR_VHOST_USER_SYSTEM`: the errno's name, such as `'EAGAIN'` or `'EBADF'`. */
  readonly errno: string | undefined;
  /** For `ERR_VHOST_USER_SYSTEM`: the system call that failed, such as `'sendmsg'`. */
  readonly syscall: string | undefined;
  /** The request number of the message concerned, when there is one. */
  readonly request: number | undefined;

  constructor(code: VhostUserErrorCode, message: string, details: VhostUserErrorDetails = {}) {
    super(code, message, details);
    this.errno = details.errno;
    this.syscall = details.syscall;
    this.request = details.request;
  }
}
