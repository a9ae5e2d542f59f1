/**
 * The source side of the two-process migration tests: a child process that builds 2 x 16 MiB of
 * shared guest memory (two adjacent regions), starts the dirty-writer workers of the virtio stress test (typed/bulk
 * writes, virtio-blk IN requests through IoVecBufferMut, raw slice views), and migrates the
 * memory to 127.0.0.1:`port` while they write. Its pause callback stops the writers. Then it
 * dumps its memory to `dump` and reports over IPC.
 *
 * `kill` destroys the connection in one phase: `layout` (before the first byte), `first` (1 MiB
 * into the first pass), `dirty` (16 KiB into the dirty rounds), `final` (at the first write after
 * the pause).
 */
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { GuestAddress } from '../../address/address.js';
import { sharedBackend } from '../../backend/buffer.js';
import { AtomicBitmap } from '../../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { GuestMemoryRegion } from '../../region/region.js';
import { startWorkers } from '../../test-support/workers.js';
import type { DirtyWriterData, WritePath } from '../../virtio/test-workers/dirty-writer.js';
import { sendMigration, type SendProgress } from '../send.js';

export interface SenderPlan {
  port: number;
  dump: string;
  kill?: 'layout' | 'first' | 'dirty' | 'final' | undefined;
  downtimeMs: number;
  maxRounds: number;
  bandwidthLimit: number;
  /** How long the writers write before the migration starts, in ms. */
  warmupMs: number;
}

export type SenderReport =
  | { ok: true; result: Awaited<ReturnType<typeof sendMigration>>; writes: Record<string, number>; progress: SendProgress[] }
  | { ok: false; code: string; message: string };

const PAGE = 4096;
const REGION = 16 << 20;
const RING_PAGES = 4;
const PATHS: WritePath[] = ['bytes', 'blk', 'view'];
const plan = JSON.parse(process.argv[2]) as SenderPlan;

// Two adjacent regions: harvested runs cross from one into the other.
const regions = [0, REGION].map((start) => ({
  start,
  buffer: new SharedArrayBuffer(REGION),
  bitmap: new AtomicBitmap(REGION, { shared: true }),
}));
const mem = GuestMemory.fromRegions(regions.map((r) => new GuestMemoryRegion(GuestAddress(r.start), sharedBackend(r.buffer), { bitmap: r.bitmap })));
// Some content before the start: every third page holds its number, the others stay zero.
for (let p = 0; p < mem.totalSize / PAGE; p += 3) {
  mem.writeU32LE(GuestAddress(p * PAGE), p + 1);
}

const control = new Int32Array(new SharedArrayBuffer(8));
const writes: Record<string, number> = {};
const data: DirtyWriterData[] = PATHS.map((path, worker) => ({
  regions: regions.map((r) => ({ start: r.start, buffer: r.buffer, bitmap: r.bitmap.share() })),
  pageSize: PAGE,
  firstDataPage: PATHS.length * RING_PAGES,
  ringPages: RING_PAGES,
  worker,
  workers: PATHS.length,
  path,
  seed: 0x9e3779b9 * (worker + 1),
  control: control.buffer as SharedArrayBuffer,
  maxDelayMs: 1,
}));
const group = startWorkers(new URL('../../virtio/test-workers/dirty-writer.js', import.meta.url), data, (i, n) => {
  writes[PATHS[i]] = n as number;
});
await group.online;
Atomics.store(control, 0, 1);
Atomics.notify(control, 0);
// Until every writer has written a page of its own (page p is worker p % 3's): loading a worker takes a while.
const writing = () => {
  const seen = new Set<number>();
  for (const { start, length } of mem.dirtyRanges()) {
    for (let p = Math.max(start / PAGE, PATHS.length * RING_PAGES); p < (start + length) / PAGE; p++) seen.add(p % PATHS.length);
  }
  return seen.size === PATHS.length;
};
for (const end = Date.now() + 20_000; !writing() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
await new Promise((r) => setTimeout(r, plan.warmupMs));

const socket = connect(plan.port, '127.0.0.1');
await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
socket.on('error', () => {}); // the migration reports it

// Where the sender is, for `kill`: counts bytes per phase and destroys the socket on cue.
let phase: 'layout' | 'first' | 'dirty' | 'final' = 'layout';
let phaseBytes = 0;
const cue = { layout: 0, first: 1 << 20, dirty: 16 << 10, final: 0 };
const write = socket.write.bind(socket) as (chunk: Uint8Array) => boolean;
socket.write = ((chunk: Uint8Array) => {
  // The first write is the HELLO frame: the first pass follows it.
  if (phase === 'layout' && phaseBytes > 0) [phase, phaseBytes] = ['first', 0];
  if (plan.kill === phase && phaseBytes >= cue[phase]) {
    socket.destroy();
    return false;
  }
  phaseBytes += chunk.length;
  return write(chunk);
}) as typeof socket.write;

const progress: SendProgress[] = [];
let report: SenderReport;
try {
  const result = await sendMigration(mem, socket, {
    downtimeMs: plan.downtimeMs,
    maxRounds: plan.maxRounds,
    bandwidthLimit: plan.bandwidthLimit,
    onProgress: (p) => {
      progress.push(p);
      if (p.phase !== 'final') [phase, phaseBytes] = ['dirty', 0];
    },
    pause: async () => {
      Atomics.store(control, 1, 1);
      await group.exited;
      [phase, phaseBytes] = ['final', 0];
    },
  });
  report = { ok: true, result, writes, progress };
} catch (e) {
  report = { ok: false, code: (e as { code: string }).code, message: (e as Error).message };
}
Atomics.store(control, 1, 1);
await group.exited.catch(() => {});
const dump = new Uint8Array(mem.totalSize);
mem.readSlice(GuestAddress(0), dump);
writeFileSync(plan.dump, dump);
socket.destroy();
process.send?.(report, () => process.exit(0));
