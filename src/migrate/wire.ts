/**
 * The wire format of guestmem/migrate, version 1: frames, their limits and their encoding. The
 * format itself is documented in this module's index (the package documentation of
 * `guestmem/migrate`).
 */import { MigrateError } from './errors.js';

export const MAGIC = 0x4d47;
export const HELLO_MAGIC = 'GMMIGRAT';
/** The version of the wire format this module speaks (HELLO carries it; a receiver refuses others). */
export const WIRE_VERSION = 1;
export const PAGE_SIZE = 4096;
export const HEADER_SIZE = 8;
/** Pages in one PAGES frame at most (1 MiB of data). */
export const MAX_FRAME_PAGES = 256;
export const MAX_REGIONS = 4096;
/** The PAGES and ZERO frames' fixed part. */
export const RANGE_SIZE = 16;
export const DONE_SIZE = 40;

export const enum FrameType {
  HELLO = 1,
  PAGES = 2,
  ZERO = 3,
  ROUND = 4,
  DONE = 5,
  RESULT = 6,
}

/** RESULT statuses. */
export const enum Status {
  OK = 0,
  LAYOUT = 1,
  CHECKSUM = 2,
  PROTOCOL = 3,
}

/** The largest payload of each type the reader accepts before it buffers a byte of it. */
function maxPayload(type: number): number {
  switch (type) {
    case FrameType.HELLO:
      return 20 + 16 * MAX_REGIONS;
    case FrameType.PAGES:
      return RANGE_SIZE + MAX_FRAME_PAGES * PAGE_SIZE;
    case FrameType.ZERO:
      return RANGE_SIZE;
    case FrameType.ROUND:
      return 8;
    case FrameType.DONE:
      return DONE_SIZE;
    case FrameType.RESULT:
      return 4;
    default:
      return -1;
  }
}

export function protocolError(message: string, details: { address?: number; length?: number } = {}): MigrateError {
  return new MigrateError('ERR_MIGRATE_PROTOCOL', message, details);
}

/** A frame header for `type` with `length` payload bytes, followed by `fixed` (the payload's fixed part). */
export function frame(type: FrameType, length: number, fixed: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE + fixed.length);
  b.writeUInt16LE(MAGIC, 0);
  b[2] = type;
  b[3] = 0;
  b.writeUInt32LE(length, 4);
  fixed.copy(b, HEADER_SIZE);
  return b;
}

/** Writes a guest address or length (< 2^53) as a u64. */
export function writeU64(b: Buffer, value: number, at: number): void {
  b.writeUInt32LE(value % 2 ** 32, at);
  b.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
}

/** Reads a u64 that must be a safe integer (a hostile one is a protocol error). */
export function readU64(b: Buffer, at: number, what: string): number {
  const hi = b.readUInt32LE(at + 4);
  if (hi >= 2 ** 21) throw protocolError(`${what} is 2^53 or more`);
  return hi * 2 ** 32 + b.readUInt32LE(at);
}

/** The fixed part of a PAGES or ZERO frame. */
export function rangeFixed(gpa: number, pages: number, round: number): Buffer {
  const b = Buffer.allocUnsafe(RANGE_SIZE);
  writeU64(b, gpa, 0);
  b.writeUInt32LE(pages, 8);
  b.writeUInt32LE(round, 12);
  return b;
}

/** Receives frames: small ones whole, PAGES as their fixed part then their data in pieces. */
export interface FrameSink {
  /** A whole frame other than PAGES. */
  frame(type: FrameType, payload: Buffer): void;
  /** The fixed part of a PAGES frame (checked here against its length); its data follows. */
  pagesStart(fixed: Buffer, dataLength: number): void;
  /** `chunk` of the current PAGES frame's data, `at` bytes into it. */
  pagesData(at: number, chunk: Uint8Array): void;
}

/**
 * Splits a byte stream into frames. A header with a bad magic, an unknown type, non-zero flags
 * or a length beyond the type's maximum is refused before any of its payload is kept; a sink
 * that throws stops the reader (every later push throws the same error).
 */
export class FrameReader {
  readonly #sink: FrameSink;
  #header = Buffer.alloc(HEADER_SIZE);
  #have = 0;
  #type = 0;
  #length = -1;
  #payload: Buffer | undefined;
  /** Bytes of the current payload consumed so far. */
  #at = 0;
  #failed: unknown;

  constructor(sink: FrameSink) {
    this.#sink = sink;
  }

  push(chunk: Buffer): void {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      this.#push(chunk);
    } catch (e) {
      this.#failed = e;
      throw e;
    }
  }

  #push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#length < 0) {
        const n = Math.min(HEADER_SIZE - this.#have, chunk.length - i);
        chunk.copy(this.#header, this.#have, i, i + n);
        this.#have += n;
        i += n;
        if (this.#have < HEADER_SIZE) return;
        this.#begin();
        if (this.#length === 0) this.#end();
        continue;
      }
      // The buffered part ends where a PAGES frame's data begins.
      const left = (this.#payload === undefined ? this.#length : this.#payload.length) - this.#at;
      const n = Math.min(left, chunk.length - i);
      if (this.#payload !== undefined) {
        chunk.copy(this.#payload, this.#at, i, i + n);
        this.#at += n;
        if (this.#type === FrameType.PAGES && this.#at === RANGE_SIZE) {
          this.#sink.pagesStart(this.#payload, this.#length - RANGE_SIZE);
          this.#payload = undefined;
        }
      } else {
        this.#sink.pagesData(this.#at - RANGE_SIZE, chunk.subarray(i, i + n));
        this.#at += n;
      }
      i += n;
      if (this.#at === this.#length) this.#end();
    }
  }

  #begin(): void {
    const h = this.#header;
    const type = h[2];
    const length = h.readUInt32LE(4);
    if (h.readUInt16LE(0) !== MAGIC) throw protocolError(`a frame header without the magic 0x${MAGIC.toString(16)}: the stream is corrupt or out of step`);
    const max = maxPayload(type);
    if (max < 0) throw protocolError(`unknown frame type ${type}`);
    if (h[3] !== 0) throw protocolError(`frame type ${type} has flags 0x${h[3].toString(16)}, which version ${WIRE_VERSION} does not define`);
    if (length > max) throw protocolError(`a frame of type ${type} with ${length} payload bytes (at most ${max})`, { length });
    if (type === FrameType.PAGES && length < RANGE_SIZE) throw protocolError(`a PAGES frame of ${length} bytes`, { length });
    this.#type = type;
    this.#length = length;
    this.#at = 0;
    this.#payload = Buffer.allocUnsafe(type === FrameType.PAGES ? RANGE_SIZE : length);
  }

  #end(): void {
    // A PAGES frame went to pagesStart when its fixed part was in.
    if (this.#type !== FrameType.PAGES) this.#sink.frame(this.#type, this.#payload as Buffer);
    this.#length = -1;
    this.#have = 0;
    this.#payload = undefined;
  }
}
