/**
 * guestmem/migrate: pre-copy migration of a `GuestMemory` over a stream (any Node `Duplex`:
 * a TCP or Unix socket, a pipe), from {@link sendMigration} to a {@link MigrationReceiver}.
 *
 * The sender sends every page once (zero pages as markers), then rounds of the pages dirtied
 * meanwhile until what is left fits the downtime budget at the measured bandwidth (or a round
 * limit), then calls the caller's `pause`, sends the final round and a checksum of all memory,
 * which the receiver verifies before it reports `'complete'`.
 *
 * ## Wire format, version 1
 *
 * All integers are little-endian. Every frame is an 8-byte header, `magic u16 = 0x4d47` ("GM"),
 * `type u8`, `flags u8 = 0`, `length u32` (payload bytes), then the payload:
 *
 * | type | name | direction | payload |
 * | --- | --- | --- | --- |
 * | 1 | HELLO | sender → receiver | `"GMMIGRAT"`, `version u32 = 1`, `pageSize u32 = 4096`, `regions u32` (1..4096), then per region `start u64`, `length u64` (guest addresses below 2^53) |
 * | 2 | PAGES | sender → receiver | `gpa u64`, `pages u32` (1..256), `round u32`, then `pages` × 4096 bytes |
 * | 3 | ZERO | sender → receiver | `gpa u64`, `pages u32` (≥ 1), `round u32`: these pages read as zeros |
 * | 4 | ROUND | sender → receiver | `round u32`, `pages u32`: round `round` ends, having sent `pages` pages |
 * | 5 | DONE | sender → receiver | `rounds u32`, `reserved u32 = 0`, `checksum` (32 bytes) |
 * | 6 | RESULT | receiver → sender | `status u32`: 0 accepted, 1 layout refused, 2 checksum mismatch, 3 frame refused |
 *
 * The stream starts with HELLO, which the receiver answers with RESULT (0, or 1: its memory has
 * other regions, or a read-only one). Round 0 is the first pass over all memory; every round
 * ends with ROUND; page ranges are 4 KiB-aligned and lie inside one region of the layout. DONE
 * follows the final round; the receiver answers RESULT 0 (its memory matches) or 2. A receiver
 * that refuses a frame sends RESULT 3 before it stops reading.
 *
 * The checksum is SHA-256 over the SHA-256 of each 64 KiB chunk of memory, regions in address
 * order, each cut into chunks from its start (its last chunk may be shorter): the receiver hashes
 * chunks as rounds end, and after the pause only those the final round wrote.
 *
 * Every field is hostile input to the receiver: the magic, type, flags and a length within the
 * type's limit are checked before any payload is kept, and a range before a byte of its pages is
 * written. A stream cut or corrupted mid-way is a {@link MigrateError} on both sides
 * (`ERR_MIGRATE_CLOSED`, `ERR_MIGRATE_PROTOCOL`, `ERR_MIGRATE_CHECKSUM`), and the receiver's
 * {@link MigrationReceiver.state} says `'incomplete'`: corrupted page bytes are caught by the
 * checksum at the end, not frame by frame.
 *
 * @packageDocumentation
 */
export { MigrateError, type MigrateErrorCode } from './errors.js';
export { sendMigration, type SendOptions, type SendProgress, type SendResult } from './send.js';
export { MigrationReceiver, type ReceiveOptions, type ReceiveProgress, type ReceiveResult, type ReceiverState } from './receive.js';
export { WIRE_VERSION } from './wire.js';
