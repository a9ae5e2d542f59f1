/**
 * The root of guestmem's error classes.
 *
 * Each layer throws its own subclass (AddressError, VolatileMemoryError, GuestMemoryError, ...)
 * and every error carries a stable `code`, as Node's own errors do: match on `err.code`, never on
 * the message. The numbers involved travel as properties so that callers need not parse text.
 */
export class GuestmemError<Code extends string = string> extends Error {
  /** Stable identifier of the failure, e.g. `'ERR_GUEST_ADDRESS_INVALID'`. */
  readonly code: Code;
  /** The address (guest, region-relative or slice offset) the failure concerns, if any. */
  readonly address: number | undefined;
  /** The length of the access or range involved, if any. */
  readonly length: number | undefined;
  /** For a transfer that stopped short: how many bytes were asked for. */
  readonly expected: number | undefined;
  /** For a transfer that stopped short: how many bytes were really moved. */
  readonly completed: number | undefined;

  constructor(code: Code, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.address = details.address;
    this.length = details.length;
    this.expected = details.expected;
    this.completed = details.completed;
  }

  /** The class name, e.g. `'GuestMemoryError'`, as Node's errors report theirs. */
  override get name(): string {
    return this.constructor.name;
  }
}

/** Optional facts attached to an error. */
export interface ErrorDetails {
  /** Becomes the error's `address`. */
  address?: number | undefined;
  /** Becomes the error's `length`. */
  length?: number | undefined;
  /** Becomes the error's `expected`. */
  expected?: number | undefined;
  /** Becomes the error's `completed`. */
  completed?: number | undefined;
  /** The underlying failure (a system error, say), as `Error.cause`. */
  cause?: unknown;
}

/** Formats a number as hex for messages: addresses read best that way. */
export function hex(n: number | bigint): string {
  return n < 0 ? `-0x${(-n).toString(16)}` : `0x${n.toString(16)}`;
}
