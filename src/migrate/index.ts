/**
 * guestmem/migrate: pre-copy migration of a {@link GuestMemory} over a stream.
 *
 * {@link sendMigration} and {@link MigrationReceiver} speak the small versioned wire format
 * described in `wire.ts` (version 1) over any Node `Duplex`: a TCP or Unix socket, a pipe.
 *
 * @packageDocumentation
 */
export { MigrateError, type MigrateErrorCode } from './errors.js';
export { sendMigration, type SendOptions, type SendProgress, type SendResult } from './send.js';
export { MigrationReceiver, type ReceiveOptions, type ReceiveProgress, type ReceiveResult, type ReceiverState } from './receive.js';
export { VERSION as WIRE_VERSION } from './wire.js';
