import { GuestmemError } from '../errors.js';

/** Codes of {@link GuestMemoryError}. */
export type GuestMemoryErrorCode =
  /** A guest address that no region backs. */
  | 'ERR_GUEST_ADDRESS_INVALID'
  /** A guest memory needs at least one region. */
  | 'ERR_NO_REGIONS'
  /** Two regions claim the same guest addresses. */
  | 'ERR_REGION_OVERLAP'
  /** No region matches the one to remove. */
  | 'ERR_REGION_NOT_FOUND'
  /** A write that would reach a read-only region; nothing was written. */
  | 'ERR_READ_ONLY'
  /** A range asked for as one slice spans more than one region. */
  | 'ERR_REGION_CROSSING'
  /** An argument of the wrong kind (not a region, not a GuestMemory). */
  | 'ERR_INVALID_ARG'
  /** A region whose backend or bitmap no other worker or process can see was asked to be shared. */
  | 'ERR_REGION_NOT_SHAREABLE'
  /** Data given to `rebuildGuestMemory` that is not a guest memory description. */
  | 'ERR_DESCRIPTION_INVALID'
  /** A described backend of a kind that no resolver given to `rebuildGuestMemory` handles. */
  | 'ERR_NO_RESOLVER'
  /** {@link GuestMemoryAtomic.update} called from inside an update. */
  | 'ERR_UPDATE_IN_PROGRESS'
  /** A region asked for dirty pages has a bitmap that cannot be harvested or merged into. */
  | 'ERR_NOT_TRACKED';

/** Errors of the guest memory layer: layout and guest addresses. */
export class GuestMemoryError extends GuestmemError<GuestMemoryErrorCode> {}
