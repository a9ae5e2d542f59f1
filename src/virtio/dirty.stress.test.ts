/**
 * No lost dirty page on any write path: workers write guest memory through typed writes,
 * virtio-blk IN requests (IoVecBufferMut views written after a modelled disk latency) and raw
 * `VolatileSlice.view('write')` views, while the main thread harvests in rounds and copies what
 * it harvests into a mirror, as a migration source copies to its destination. After a final
 * harvest the mirror must equal memory: a page that differs is one whose last write no harvest
 * reported.
 *
 * GUESTMEM_STRESS_MS sets how long the workers write (default 3000).
 */
import assert from 'node:assert/strict';
import { setImmediate } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { startWorkers } from '../test-support/workers.js';
import type { DirtyWriterData, WritePath } from './test-workers/dirty-writer.js';

const PAGE = 4096;
const REGION_PAGES = 1024;
const RING_PAGES = 4;
const PATHS: WritePath[] = ['bytes', 'blk', 'view'];
const DURATION_MS = Number(process.env.GUESTMEM_STRESS_MS ?? 3000);

describe('dirty tracking under concurrent writers', () => {
  it('loses no page on any write path while a harvester copies what it harvests', async (t) => {
    // Two adjacent regions, each with its own shared bitmap.
    const regions = [0, REGION_PAGES * PAGE].map((start) => ({
      start,
      buffer: new SharedArrayBuffer(REGION_PAGES * PAGE),
      bitmap: new AtomicBitmap(REGION_PAGES * PAGE, { shared: true }),
    }));
    const mem = GuestMemory.fromRegions(regions.map((r) => new GuestMemoryRegion(GuestAddress(r.start), sharedBackend(r.buffer), { bitmap: r.bitmap })));
    const mirror = new Uint8Array(mem.totalSize);
    const control = new Int32Array(new SharedArrayBuffer(8));
    const workers = PATHS.length;
    const writes: Record<string, number> = {};
    const data = PATHS.map(
      (path, worker): DirtyWriterData => ({
        regions: regions.map((r) => ({ start: r.start, buffer: r.buffer, bitmap: r.bitmap.share() })),
        pageSize: PAGE,
        firstDataPage: workers * RING_PAGES,
        ringPages: RING_PAGES,
        worker,
        workers,
        path,
        seed: 0x2545f491 * (worker + 1),
        control: control.buffer as SharedArrayBuffer,
        maxDelayMs: 1,
      }),
    );
    const group = startWorkers(new URL('./test-workers/dirty-writer.js', import.meta.url), data, (i, n) => {
      writes[PATHS[i]] = n as number;
    });
    await group.online;

    const copyHarvest = (): number => {
      const ranges = mem.harvestDirty();
      for (const { start, length } of ranges) mem.readSlice(GuestAddress(start), mirror.subarray(start, start + length));
      return ranges.length;
    };
    // The rings were laid out before the start: the mirror begins as memory is.
    copyHarvest();
    Atomics.store(control, 0, 1);
    Atomics.notify(control, 0);
    const stopAt = Date.now() + DURATION_MS;
    let rounds = 0;
    let busyRounds = 0;
    while (group.running() > 0) {
      if (Date.now() >= stopAt) Atomics.store(control, 1, 1);
      rounds++;
      if (copyHarvest() > 0) busyRounds++;
      await setImmediate();
    }
    await group.exited;
    copyHarvest();

    const now = new Uint8Array(mem.totalSize);
    mem.readSlice(GuestAddress(0), now);
    const lost: Record<string, number> = { rings: 0, bytes: 0, blk: 0, view: 0 };
    let lostPages = 0;
    for (let p = 0; p < mem.totalSize / PAGE; p++) {
      if (Buffer.compare(now.subarray(p * PAGE, (p + 1) * PAGE), mirror.subarray(p * PAGE, (p + 1) * PAGE)) === 0) continue;
      lostPages++;
      lost[p < workers * RING_PAGES ? 'rings' : PATHS[p % workers]]++;
    }
    t.diagnostic(`writes ${JSON.stringify(writes)}; ${rounds} harvest rounds (${busyRounds} non-empty); lost pages ${lostPages} ${JSON.stringify(lost)}`);
    assert.equal(Object.keys(writes).length, workers, 'every worker reported');
    assert.ok(busyRounds > 1, 'harvests ran while the workers wrote');
    assert.equal(lostPages, 0, `pages whose last write no harvest reported: ${JSON.stringify(lost)}`);
  });
});
