import { GuestmemError } from '../errors.js';

/** Codes of {@link AddressError}. */
export type AddressErrorCode =
  /** A value that must be a non-negative safe integer is not one. */
  | 'ERR_INVALID_ADDRESS'
  /** Checked arithmetic left the range of non-negative safe integers. */
  | 'ERR_GUEST_ADDRESS_OVERFLOW'
  /** An alignment that is not a power of two. */
  | 'ERR_INVALID_ALIGNMENT';

/** Errors of the address layer: validation and checked arithmetic. */
export class AddressError extends GuestmemError<AddressErrorCode> {}
