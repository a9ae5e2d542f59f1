import type { Duplex } from 'node:stream';
import { GuestAddress } from '../address/address.js';
import { hex } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { Channel } from './channel.js';
import { MigrateError } from './errors.js';
import { ChunkHashes, layoutOf, showLayout, type WireRegion } from './layout.js';
import {
  DONE_SIZE,
  FrameType,
  frame,
  HELLO_MAGIC,
  MAX_REGIONS,
  PAGE_SIZE,
  protocolError,
  RANGE_SIZE,
  readU64,
  Status,
  WIRE_VERSION,
} from './wire.js';

/** Where a {@link MigrationReceiver} stands. */
export type ReceiverState =
  /** No layout yet: the memory is untouched. */
  | 'waiting'
  /** Pages are arriving: the memory is a partial copy. */
  | 'receiving'
  /** The checksum matched: the memory is the sender's. */
  | 'complete'
  /** The layout was refused: the memory is untouched. */
  | 'refused'
  /** The stream broke or was refused after pages arrived: the memory is a partial copy, not to be run. */
  | 'incomplete';

/** What the receiver reports as it goes. */
export interface ReceiveProgress {
  /** The round that just ended (0 is the first pass). */
  readonly round: number;
  /** Pages received so far, zero markers included. */
  readonly pagesReceived: number;
}

/** Options of {@link MigrationReceiver}. */
export interface ReceiveOptions {
  /** Hears each round's end. */
  onProgress?: ((progress: ReceiveProgress) => void) | undefined;
}

/** What a completed migration brought. */
export interface ReceiveResult {
  /** Rounds received: the first pass, the dirty rounds and the final round. */
  readonly rounds: number;
  /** Pages received in all rounds, zero markers included. */
  readonly pagesReceived: number;
}

/**
 * The receiving end of {@link sendMigration}: writes the pages arriving on `stream` into
 * `memory`, which must have the sender's layout (same regions, writable).
 *
 * A layout that differs is refused before a byte is written (state `'refused'`). Every frame is
 * checked as hostile input (addresses and lengths inside one region, rounds in order, page
 * counts per round); a broken, cut or corrupted stream rejects {@link MigrationReceiver.done}
 * with a {@link MigrateError} and leaves the state `'incomplete'`: only `'complete'` (the
 * sender's checksum of all memory matched) means the memory can run. The stream is left open.
 */
export class MigrationReceiver {
  readonly #memory: GuestMemory;
  readonly #layout: WireRegion[];
  readonly #channel: Channel;
  readonly #onProgress: ReceiveOptions['onProgress'];
  #state: ReceiverState = 'waiting';
  #round = 0;
  #roundPages = 0;
  #pages = 0;
  /** The guest address of the PAGES frame whose data is arriving, and its region's start. */
  #target = 0;
  #targetRegion = 0;
  /** What the checksum needs hashed again. */
  readonly #hashes: ChunkHashes;
  /** True while {@link MigrationReceiver.#hashInIdleTime} runs. */
  #hashing = false;
  #settle!: { resolve: (r: ReceiveResult) => void; reject: (e: MigrateError) => void };
  /** Settles when the migration completes (or fails, with a {@link MigrateError}). */
  readonly done: Promise<ReceiveResult>;

  /** @throws {MigrateError} `ERR_MIGRATE_MEMORY` when `memory` has a region not made of whole 4 KiB pages. */
  constructor(memory: GuestMemory, stream: Duplex, options: ReceiveOptions = {}) {
    this.#memory = memory;
    this.#layout = layoutOf(memory);
    this.#hashes = new ChunkHashes(memory);
    this.#onProgress = options.onProgress;
    this.done = new Promise((resolve, reject) => (this.#settle = { resolve, reject }));
    // A caller that only watches `state` must not have a failed migration end the process.
    this.done.catch(() => {});
    this.#channel = new Channel(
      stream,
      {
        frame: (type, payload) => this.#frame(type, payload),
        pagesStart: (fixed, dataLength) => this.#pagesStart(fixed, dataLength),
        pagesData: (at, chunk) => {
          this.#memory.writeSlice(GuestAddress(this.#target + at), chunk);
          // Marked after the write: a chunk hashed in between must be hashed again.
          this.#hashes.written(this.#targetRegion, this.#target + at, chunk.length);
        },
      },
      (error) => {
        if (this.#state === 'receiving') this.#state = 'incomplete';
        // Tell the sender why, when the stream still carries it.
        const status = error.code === 'ERR_MIGRATE_LAYOUT' ? Status.LAYOUT : error.code === 'ERR_MIGRATE_CHECKSUM' ? Status.CHECKSUM : Status.PROTOCOL;
        if (error.code !== 'ERR_MIGRATE_CLOSED') this.#channel.tryWrite(result(status));
        this.#settle.reject(error);
      },
    );
  }

  /** Where the migration stands; only `'complete'` is a finished copy. */
  get state(): ReceiverState {
    return this.#state;
  }

  #frame(type: FrameType, p: Buffer): void {
    if (this.#state === 'waiting') {
      if (type !== FrameType.HELLO) throw protocolError(`a frame of type ${type} before the layout`);
      this.#hello(p);
      return;
    }
    switch (type) {
      case FrameType.ZERO: {
        if (p.length !== RANGE_SIZE) throw protocolError(`a ZERO frame of ${p.length} bytes`, { length: p.length });
        const { gpa, length, regionStart } = this.#range(p);
        this.#memory.fill(GuestAddress(gpa), length, 0);
        this.#hashes.written(regionStart, gpa, length);
        return;
      }
      case FrameType.ROUND: {
        if (p.length !== 8) throw protocolError(`a ROUND frame of ${p.length} bytes`, { length: p.length });
        const round = p.readUInt32LE(0);
        const pages = p.readUInt32LE(4);
        if (round !== this.#round) throw protocolError(`round ${round} ended during round ${this.#round}`);
        if (pages !== this.#roundPages) throw protocolError(`round ${round} says ${pages} pages, ${this.#roundPages} arrived`);
        // Hash what this round wrote while the guest still runs on the source, in idle time.
        this.#hashInIdleTime();
        this.#onProgress?.({ round, pagesReceived: this.#pages });
        this.#round++;
        this.#roundPages = 0;
        return;
      }
      case FrameType.DONE: {
        if (p.length !== DONE_SIZE) throw protocolError(`a DONE frame of ${p.length} bytes`, { length: p.length });
        if (p.readUInt32LE(0) !== this.#round || p.readUInt32LE(4) !== 0 || this.#roundPages !== 0) {
          throw protocolError(`DONE after ${p.readUInt32LE(0)} rounds, where ${this.#round} rounds ended`);
        }
        if (!this.#hashes.checksum().equals(p.subarray(8))) {
          throw new MigrateError('ERR_MIGRATE_CHECKSUM', "the memory received does not match the sender's checksum: the stream was corrupted");
        }
        this.#state = 'complete';
        this.#channel.finish();
        this.#channel.tryWrite(result(Status.OK));
        this.#settle.resolve({ rounds: this.#round, pagesReceived: this.#pages });
        return;
      }
      default:
        throw protocolError(`a frame of type ${type} after the layout`);
    }
  }

  #hello(p: Buffer): void {
    if (p.length < 20 || p.toString('latin1', 0, 8) !== HELLO_MAGIC) throw protocolError('the stream does not start with a guestmem migration HELLO');
    const version = p.readUInt32LE(8);
    if (version !== WIRE_VERSION) throw protocolError(`wire format version ${version}; this receiver reads version ${WIRE_VERSION}`);
    if (p.readUInt32LE(12) !== PAGE_SIZE) throw protocolError(`page size ${p.readUInt32LE(12)}; the format's is ${PAGE_SIZE}`);
    const count = p.readUInt32LE(16);
    if (count === 0 || count > MAX_REGIONS || p.length !== 20 + 16 * count) throw protocolError(`a HELLO of ${p.length} bytes for ${count} regions`);
    const theirs = Array.from({ length: count }, (_, i) => ({
      start: readU64(p, 20 + 16 * i, `region ${i}'s start`),
      length: readU64(p, 28 + 16 * i, `region ${i}'s length`),
    }));
    const ours = this.#layout;
    const same = theirs.length === ours.length && theirs.every((r, i) => r.start === ours[i].start && r.length === ours[i].length);
    const readOnly = this.#memory.regions().find((r) => r.readOnly);
    if (!same || readOnly !== undefined) {
      this.#state = 'refused';
      throw new MigrateError(
        'ERR_MIGRATE_LAYOUT',
        same
          ? `the memory has a read-only region at ${hex((readOnly as GuestMemoryRegion).start)}: a migration cannot write it`
          : `the sender's memory has regions ${showLayout(theirs)}, this memory has ${showLayout(ours)}`,
      );
    }
    this.#state = 'receiving';
    this.#channel.tryWrite(result(Status.OK));
  }

  /**
   * Hashes stale chunks 1 MiB at a time between the stream's events, so that frames keep being
   * read (the sender is never held up) and the checksum at DONE has little left to do.
   */
  #hashInIdleTime(): void {
    if (this.#hashing) return;
    this.#hashing = true;
    const step = () => {
      if (this.#state === 'receiving' && this.#hashes.refreshSome(16)) setImmediate(step);
      else this.#hashing = false;
    };
    setImmediate(step);
  }

  /** The checked range of a PAGES or ZERO frame's fixed part: page-aligned, inside one region, of this round. */
  #range(p: Buffer): { gpa: number; length: number; regionStart: number } {
    const gpa = readU64(p, 0, 'a page address');
    const pages = p.readUInt32LE(8);
    const round = p.readUInt32LE(12);
    if (round !== this.#round) throw protocolError(`pages of round ${round} during round ${this.#round}`, { address: gpa });
    if (pages === 0 || gpa % PAGE_SIZE !== 0) throw protocolError(`${pages} pages at ${hex(gpa)}`, { address: gpa });
    const length = pages * PAGE_SIZE;
    const region = this.#memory.findRegion(GuestAddress(gpa));
    if (region === undefined || gpa + length > region.start + region.length) {
      throw protocolError(`${hex(length)} bytes at ${hex(gpa)} are not inside one region of the memory`, { address: gpa, length });
    }
    this.#pages += pages;
    this.#roundPages += pages;
    return { gpa, length, regionStart: region.start };
  }

  #pagesStart(fixed: Buffer, dataLength: number): void {
    if (this.#state !== 'receiving') throw protocolError('pages before the layout');
    const pages = fixed.readUInt32LE(8);
    if (dataLength !== pages * PAGE_SIZE) throw protocolError(`a PAGES frame of ${pages} pages carries ${dataLength} bytes`, { length: dataLength });
    const { gpa, regionStart } = this.#range(fixed);
    this.#target = gpa;
    this.#targetRegion = regionStart;
  }
}

function result(status: Status): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(status, 0);
  return frame(FrameType.RESULT, 4, b);
}
