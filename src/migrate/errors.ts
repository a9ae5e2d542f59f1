import { type ErrorDetails, GuestmemError } from '../errors.js';

/** Codes of {@link MigrateError}. */
export type MigrateErrorCode =
  /** The receiver's memory does not have the sender's layout (or cannot be written): nothing was written. */
  | 'ERR_MIGRATE_LAYOUT'
  /** A frame that breaks the wire format: bad magic, version, type, length, address, round or order. */
  | 'ERR_MIGRATE_PROTOCOL'
  /** The memory the receiver holds at the end does not hash to the sender's checksum. */
  | 'ERR_MIGRATE_CHECKSUM'
  /** The stream ended, failed or was destroyed before the migration completed. */
  | 'ERR_MIGRATE_CLOSED'
  /** The caller's pause (or dirty-sync) callback threw; the migration was abandoned. */
  | 'ERR_MIGRATE_CALLBACK'
  /** Memory the migration cannot carry: regions not aligned to 4 KiB pages, or not dirty-tracked. */
  | 'ERR_MIGRATE_MEMORY'
  /** An option out of range (a bandwidth limit or budget that is not a positive number). */
  | 'ERR_MIGRATE_INVALID_ARG';

/** Errors of guestmem/migrate, on the sending and on the receiving side. */
export class MigrateError extends GuestmemError<MigrateErrorCode> {
  constructor(code: MigrateErrorCode, message: string, details: ErrorDetails = {}) {
    super(code, message, details);
  }
}
