import { GuestmemError } from '../errors.js';

/** Codes of {@link MemoryManagerError}. */
export type MemoryManagerErrorCode =
  /** Two regions of the same priority claim the same guest addresses. */
  | 'ERR_PRIORITY_OVERLAP'
  /** A visibility change for a range that is not exactly one RAM, ROM or device region. */
  | 'ERR_NOT_CONTROLLABLE'
  /** The alias map's offset lies below the end of the layout. */
  | 'ERR_ALIAS_MAP_WONT_FIT'
  /** More RAM than the backing holds (or than one heap buffer can). */
  | 'ERR_RAM_TOO_LARGE'
  /** x86 legacy support without RAM from 0 covering at least 1 MiB. */
  | 'ERR_LEGACY_RAM_LAYOUT'
  /** RAM and MMIO ranges of a layout that are empty, unsorted or overlapping. */
  | 'ERR_INVALID_LAYOUT'
  /** A huge page size that is not a power of two from 4 KiB to 1 GiB. */
  | 'ERR_HUGE_PAGE_SIZE'
  /** RAM (its total, or a range's start or length) that is not a multiple of the huge page size. */
  | 'ERR_HUGE_PAGE_ALIGNMENT'
  /** Huge pages asked for with what cannot honour them (an existing backing, JS heap memory, x86 legacy splitting). */
  | 'ERR_HUGE_PAGES_UNSUPPORTED'
  /** The backing could not be allocated. */
  | 'ERR_ALLOCATION_FAILED'
  /** A region description that cannot be a region (empty, past its backing, bad sizes...). */
  | 'ERR_INVALID_REGION'
  /** A region that this manager does not hold (removed, or another manager's). */
  | 'ERR_REGION_NOT_FOUND'
  /** Removing a region that an alias still shows. */
  | 'ERR_REGION_IN_USE'
  /** A guest access to an address no region shows, under the `'error'` policy. */
  | 'ERR_UNMAPPED_ACCESS'
  /** A guest write to read-only memory, under the `'error'` policy. */
  | 'ERR_READ_ONLY'
  /** An access size that is not 1, 2 or 4, or that an MMIO region cannot be given. */
  | 'ERR_ACCESS_SIZE'
  /** A guest memory asked for while no readable memory is visible. */
  | 'ERR_NO_MEMORY'
  /** A listener that may refuse changes refused this one; the layout is as it was. */
  | 'ERR_CHANGE_REFUSED'
  /** One or more listeners threw; the change itself is complete. */
  | 'ERR_LISTENER_FAILED'
  /** A change started from inside a listener. */
  | 'ERR_REENTRANT_CHANGE'
  /** An argument of the wrong kind. */
  | 'ERR_INVALID_ARG';

/** Errors of the memory manager: layout, visibility and guest-access dispatch. */
export class MemoryManagerError extends GuestmemError<MemoryManagerErrorCode> {}
