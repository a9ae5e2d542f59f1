import type { Duplex } from 'node:stream';
import { GuestAddress } from '../address/address.js';
import { NO_BITMAP } from '../bitmap/bitmap.js';
import { hex } from '../errors.js';
import type { GuestDirtyRange, GuestMemory } from '../memory/guest-memory.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { Channel } from './channel.js';
import { MigrateError } from './errors.js';
import { ChunkHashes, layoutOf } from './layout.js';
import {
  DONE_SIZE,
  FrameType,
  frame,
  HEADER_SIZE,
  HELLO_MAGIC,
  MAX_FRAME_PAGES,
  MAX_REGIONS,
  PAGE_SIZE,
  protocolError,
  RANGE_SIZE,
  rangeFixed,
  Status,
  WIRE_VERSION,
  writeU64,
} from './wire.js';

/** What the sender reports as it goes. */
export interface SendProgress {
  /** `'first'`: round 0, every page; `'dirty'`: a round of harvested pages while the guest runs; `'final'`: the round after the pause. */
  readonly phase: 'first' | 'dirty' | 'final';
  /** The round that just ended (0 is the first pass). */
  readonly round: number;
  /** Pages sent so far, zero pages included. */
  readonly pagesSent: number;
  /** Dirty pages waiting for the next round. */
  readonly dirtyPagesLeft: number;
  /** The round's throughput on the wire, in MB/s (10^6 bytes). */
  readonly mbPerSecond: number;
}

/** Options of {@link sendMigration}. */
export interface SendOptions {
  /**
   * Stops the guest (its vCPUs and devices) so that memory no longer changes; the final round
   * follows. Called once, when the dirty pages left fit the downtime budget or after `maxRounds`.
   */
  pause?: (() => void | Promise<void>) | undefined;
  /**
   * Called before each harvest, to fold dirty logs kept elsewhere into the memory's bitmaps (a
   * hypervisor's: `GuestMemory.mergeDirtyLog` of each slot's KVM log).
   */
  syncDirty?: (() => void | Promise<void>) | undefined;
  /**
   * The pause the guest may take for the final round, in ms (default 300): the dirty pages left
   * must go in it at the bandwidth the last round measured. The checksum of all memory comes on
   * top (the sender hashes all of it in the pause: about 1.3 ms per MiB on a 2-core EPYC).
   */
  downtimeMs?: number | undefined;
  /** Rounds of dirty pages at most before the pause, however many pages are left (default 30). */
  maxRounds?: number | undefined;
  /** Bytes per second at most on the wire (default: as fast as the stream takes them). */
  bandwidthLimit?: number | undefined;
  /** Hears each round's end. */
  onProgress?: ((progress: SendProgress) => void) | undefined;
}

/** What a completed migration took. */
export interface SendResult {
  /** Rounds sent: the first pass, the dirty rounds and the final round. */
  readonly rounds: number;
  /** Pages sent in all rounds, zero pages included. */
  readonly pagesSent: number;
  /** Of which zero pages, sent as markers. */
  readonly zeroPages: number;
  /** Bytes written to the stream. */
  readonly bytesSent: number;
  /** From the start to the receiver's confirmation, in ms. */
  readonly totalMs: number;
  /** From the pause callback's return to the receiver's confirmation, in ms: the guest's downtime. */
  readonly downtimeMs: number;
  /** The dirty pages sent after the pause. */
  readonly finalPages: number;
  /** Of the downtime, the ms spent hashing all memory for the checksum. */
  readonly checksumMs: number;
}

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

/**
 * Migrates `memory` to a {@link MigrationReceiver} at the other end of `stream`, pre-copy:
 * every page first (zero pages as markers), then rounds of the pages dirtied meanwhile
 * ({@link GuestMemory.harvestDirty}) until those left would go in `downtimeMs` at the bandwidth
 * the last round measured (or `maxRounds` passed), then `pause`, the final round, and a checksum
 * of all memory that the receiver checks. Resolves once the receiver confirmed it.
 *
 * Every region must be tracked by an `AtomicBitmap` (a region without a bitmap is refused: its
 * later writes could not be seen) and made of whole 4 KiB pages; at most 4096 regions. Writes made
 * while a round runs are caught by the next one, whatever their path (typed writes, slices,
 * iovec buffers, fd reads; a hypervisor's log through `syncDirty`). The stream is left open.
 *
 * @throws {MigrateError} `ERR_MIGRATE_MEMORY` for memory it cannot carry (before a byte is
 *   sent); `ERR_MIGRATE_INVALID_ARG` for a bad option; `ERR_MIGRATE_LAYOUT` when the receiver's
 *   memory has another layout; `ERR_MIGRATE_CLOSED` when the stream ends or fails first;
 *   `ERR_MIGRATE_CHECKSUM` / `ERR_MIGRATE_PROTOCOL` when the receiver refuses what it got;
 *   `ERR_MIGRATE_CALLBACK` when `pause` or `syncDirty` throws.
 */
export async function sendMigration(memory: GuestMemory, stream: Duplex, options: SendOptions = {}): Promise<SendResult> {
  const { pause, syncDirty, downtimeMs = 300, maxRounds = 30, bandwidthLimit, onProgress } = options;
  for (const [name, v] of [['downtimeMs', downtimeMs], ['maxRounds', maxRounds], ['bandwidthLimit', bandwidthLimit ?? 1]] as const) {
    if (typeof v !== 'number' || !(v >= 0) || v === Infinity || (name === 'bandwidthLimit' && v === 0)) {
      throw new MigrateError('ERR_MIGRATE_INVALID_ARG', `${name} must be a ${name === 'bandwidthLimit' ? 'positive' : 'non-negative'} finite number, got ${String(v)}`);
    }
  }
  const regions = layoutOf(memory);
  if (regions.length > MAX_REGIONS) {
    throw new MigrateError('ERR_MIGRATE_MEMORY', `${regions.length} regions: the wire format carries at most ${MAX_REGIONS}`, { length: regions.length });
  }
  // A region without a bitmap would be sent once and its later writes never: refuse it.
  const untracked = memory.regions().find((r) => r.bitmap === NO_BITMAP);
  if (untracked !== undefined) {
    throw new MigrateError('ERR_MIGRATE_MEMORY', `region [${hex(untracked.start)}, ${hex(untracked.start + untracked.length)}) has no dirty bitmap`, {
      address: untracked.start,
      length: untracked.length,
    });
  }
  try {
    memory.dirtyRanges();
  } catch (e) {
    throw new MigrateError('ERR_MIGRATE_MEMORY', `the memory's dirty pages cannot be harvested: ${(e as Error).message}`, { cause: e });
  }

  const results: Status[] = [];
  let resultArrived: (() => void) | undefined;
  const channel = new Channel(
    stream,
    {
      frame(type, payload) {
        if (type !== FrameType.RESULT) throw protocolError(`the receiver sent a frame of type ${type}`);
        if (payload.length !== 4) throw protocolError(`a RESULT frame of ${payload.length} bytes`);
        results.push(payload.readUInt32LE(0));
        resultArrived?.();
      },
      pagesStart() {
        throw protocolError('the receiver sent a PAGES frame');
      },
      pagesData() {},
    },
    () => resultArrived?.(),
  );
  /** The receiver's next RESULT; a refusal becomes the matching error. */
  const nextResult = async (what: string): Promise<void> => {
    while (results.length === 0 && channel.failure === undefined) await new Promise<void>((r) => (resultArrived = r));
    resultArrived = undefined;
    const status = results.shift();
    if (status === undefined) throw channel.failure as MigrateError;
    if (status !== Status.OK) throw refusal(status, what);
  };
  // A refusal the receiver sends while pages are still going out ends the sending too.
  const watchRefusal = () => {
    if (results.length > 0 && results[0] !== Status.OK) channel.fail(refusal(results[0], 'the stream'));
  };

  const t0 = performance.now();
  let bytesSent = 0;
  let pagesSent = 0;
  let zeroPages = 0;
  let round = 0;
  let roundPages = 0;
  /** Bytes per ms, measured over the last round. */
  let bandwidth = 0;

  /** Writes a frame; `flush` sends it (and what is corked before it) at once. */
  const send = async (flush: boolean, ...chunks: Uint8Array[]) => {
    watchRefusal();
    await channel.write(...chunks);
    if (flush) await channel.flush();
    for (const c of chunks) bytesSent += c.length;
    if (bandwidthLimit !== undefined) {
      const ahead = (bytesSent / bandwidthLimit) * 1000 - (performance.now() - t0);
      if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
    }
  };

  /** Sends the pages of `[start, start + length)` (page-aligned, inside one region). */
  const sendRange = async (start: number, length: number) => {
    for (let at = start; at < start + length; ) {
      const n = Math.min(start + length - at, MAX_FRAME_PAGES * PAGE_SIZE);
      const view = memory.getSlice(GuestAddress(at), n).view('read');
      const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
      // Runs of zero pages become one ZERO frame, runs of the others one PAGES frame.
      for (let p = 0; p < n; ) {
        const zero = bytes.compare(ZERO_PAGE, 0, PAGE_SIZE, p, p + PAGE_SIZE) === 0;
        let q = p + PAGE_SIZE;
        while (q < n && (bytes.compare(ZERO_PAGE, 0, PAGE_SIZE, q, q + PAGE_SIZE) === 0) === zero) q += PAGE_SIZE;
        const pages = (q - p) / PAGE_SIZE;
        if (zero) {
          await send(false, frame(FrameType.ZERO, RANGE_SIZE, rangeFixed(at + p, pages, round)));
          zeroPages += pages;
        } else {
          await send(false, frame(FrameType.PAGES, RANGE_SIZE + (q - p), rangeFixed(at + p, pages, round)), view.subarray(p, q));
        }
        pagesSent += pages;
        roundPages += pages;
        p = q;
      }
      at += n;
    }
  };

  /** Sends `ranges` as round `round`, ends it, measures it. */
  const sendRound = async (ranges: readonly { start: number; length: number }[], phase: SendProgress['phase'], dirtyLeft: () => number) => {
    const r0 = performance.now();
    const b0 = bytesSent;
    roundPages = 0;
    for (const { start, length } of ranges) {
      const first = Math.floor(start / PAGE_SIZE) * PAGE_SIZE;
      const end = Math.ceil((start + length) / PAGE_SIZE) * PAGE_SIZE;
      // A harvested run may continue into the next region: split it at region ends.
      for (let at = first; at < end; ) {
        const region = memory.findRegion(GuestAddress(at)) as GuestMemoryRegion; // harvests report memory only
        const stop = Math.min(end, region.start + region.length);
        await sendRange(at, stop - at);
        at = stop;
      }
    }
    const fixed = Buffer.alloc(8);
    fixed.writeUInt32LE(round, 0);
    fixed.writeUInt32LE(roundPages, 4);
    await send(true, frame(FrameType.ROUND, 8, fixed));
    const ms = Math.max(performance.now() - r0, 0.001);
    bandwidth = (bytesSent - b0) / ms;
    onProgress?.({ phase, round, pagesSent, dirtyPagesLeft: dirtyLeft(), mbPerSecond: bandwidth / 1000 });
    round++;
  };

  const callback = async (name: string, f: (() => void | Promise<void>) | undefined) => {
    try {
      await f?.();
    } catch (e) {
      const error = new MigrateError('ERR_MIGRATE_CALLBACK', `the ${name} callback threw: ${(e as Error).message}`, { cause: e });
      channel.fail(error);
      throw error;
    }
  };

  // Every page taken from the bitmaps, put back if the migration fails: a later snapshot or
  // migration must still see them.
  const taken: GuestDirtyRange[][] = [];
  const harvest = (): GuestDirtyRange[] => {
    const ranges = memory.harvestDirty();
    taken.push(ranges);
    return ranges;
  };
  try {
    const hello = Buffer.alloc(20 + 16 * regions.length);
    hello.write(HELLO_MAGIC, 0, 'latin1');
    hello.writeUInt32LE(WIRE_VERSION, 8);
    hello.writeUInt32LE(PAGE_SIZE, 12);
    hello.writeUInt32LE(regions.length, 16);
    regions.forEach((r, i) => {
      writeU64(hello, r.start, 20 + 16 * i);
      writeU64(hello, r.length, 28 + 16 * i);
    });
    await send(true, frame(FrameType.HELLO, hello.length, hello));
    await nextResult('the layout');

    // Clear the bits first: whatever is written from now on is sent again.
    await callback('syncDirty', syncDirty);
    harvest();
    await sendRound(regions, 'first', () => dirtyPages(memory.dirtyRanges()));
    for (let dirtyRound = 1; ; dirtyRound++) {
      await callback('syncDirty', syncDirty);
      const left = dirtyPages(memory.dirtyRanges());
      if (dirtyRound > maxRounds || left * (PAGE_SIZE + HEADER_SIZE + RANGE_SIZE) <= bandwidth * downtimeMs) break;
      await sendRound(harvest(), 'dirty', () => dirtyPages(memory.dirtyRanges()));
    }
    await callback('pause', pause);
    const paused = performance.now();
    await callback('syncDirty', syncDirty);
    const finalRanges = harvest();
    await sendRound(finalRanges, 'final', () => 0);
    const done = Buffer.alloc(DONE_SIZE);
    done.writeUInt32LE(round, 0);
    const h0 = performance.now();
    new ChunkHashes(memory).checksum().copy(done, 8);
    const checksumMs = performance.now() - h0;
    await send(true, frame(FrameType.DONE, DONE_SIZE, done));
    await nextResult('the memory');
    channel.finish();
    const end = performance.now();
    return {
      rounds: round,
      pagesSent,
      zeroPages,
      bytesSent,
      totalMs: end - t0,
      downtimeMs: end - paused,
      finalPages: dirtyPages(finalRanges),
      checksumMs,
    };
  } catch (e) {
    // The receiver's refusal says more than the closing that follows it.
    const refused = results.find((s) => s !== Status.OK);
    const error = refused !== undefined ? refusal(refused, 'the stream') : e instanceof MigrateError ? e : new MigrateError('ERR_MIGRATE_CLOSED', `the migration failed: ${(e as Error).message}`, { cause: e });
    channel.fail(error);
    memory.markDirty(taken.flat());
    throw error;
  }
}

/** Pages covered by `ranges` (4 KiB pages, a partly dirty page counting whole). */
function dirtyPages(ranges: readonly GuestDirtyRange[]): number {
  let n = 0;
  for (const { start, length } of ranges) n += Math.ceil((start + length) / PAGE_SIZE) - Math.floor(start / PAGE_SIZE);
  return n;
}

function refusal(status: number, what: string): MigrateError {
  switch (status) {
    case Status.LAYOUT:
      return new MigrateError('ERR_MIGRATE_LAYOUT', "the receiver refused the layout: its memory's regions differ");
    case Status.CHECKSUM:
      return new MigrateError('ERR_MIGRATE_CHECKSUM', `the receiver's memory does not match the checksum of ${what}`);
    case Status.PROTOCOL:
      return new MigrateError('ERR_MIGRATE_PROTOCOL', 'the receiver refused a frame of the stream');
    default:
      return protocolError(`the receiver answered with status ${status}`);
  }
}
