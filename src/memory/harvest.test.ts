/** Guest-wide dirty pages: harvest, live ranges, reset, merge of a hypervisor's log. */
import assert from 'node:assert/strict';
import { setImmediate } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { GuestAddress } from '../address/address.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { type Bitmap, NoopBitmap } from '../bitmap/bitmap.js';
import { GuestMemoryRegion } from '../region/region.js';
import { kvmLog, pagesOf } from '../test-support/bitmap.js';
import { WasmMemoryBackend } from '../backend/wasm.js';
import { newWasmMemory } from '../test-support/wasm.js';
import { GuestMemory, GuestMemoryAtomic } from './guest-memory.js';
import type { WritePagesData } from './test-workers/write-pages.js';

const PAGE = 4096;
const G = GuestAddress;

/** [0, 4 pages) and [4, 8 pages) adjacent and tracked, [16, 20 pages) untracked, [32, 36 pages) tracked. */
function layout(): GuestMemory {
  const tracked = (start: number) => new GuestMemoryRegion(G(start), heapBackend(4 * PAGE), { bitmap: new AtomicBitmap(4 * PAGE) });
  return GuestMemory.fromRegions([tracked(0), tracked(4 * PAGE), new GuestMemoryRegion(G(16 * PAGE), heapBackend(4 * PAGE)), tracked(32 * PAGE)]);
}

describe('GuestMemory dirty pages', () => {
  it('harvests every region in guest order, joining runs across adjacent regions, and clears them', () => {
    const mem = layout();
    mem.writeU8(G(33 * PAGE), 1);
    mem.writeSlice(G(3 * PAGE + 10), new Uint8Array(PAGE + 20)); // pages 3 and 4: across the region boundary
    mem.writeU8(G(17 * PAGE), 1); // untracked
    mem.writeU8(G(0), 1);
    assert.deepEqual(mem.harvestDirty(), [
      { start: 0, length: PAGE },
      { start: 3 * PAGE, length: 2 * PAGE },
      { start: 33 * PAGE, length: PAGE },
    ]);
    assert.deepEqual(mem.harvestDirty(), []);
  });

  it('puts harvested ranges back with markDirty, across adjacent regions; a range outside memory marks nothing', () => {
    const mem = layout();
    mem.writeSlice(G(3 * PAGE + 10), new Uint8Array(PAGE + 20));
    mem.writeU8(G(33 * PAGE), 1);
    const taken = mem.harvestDirty();
    assert.deepEqual(mem.harvestDirty(), []);
    assert.throws(() => mem.markDirty([...taken, { start: G(8 * PAGE), length: PAGE }]), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 8 * PAGE });
    assert.deepEqual(mem.harvestDirty(), [], 'a refused call marks nothing');
    mem.markDirty(taken);
    assert.deepEqual(mem.harvestDirty(), taken);
  });

  it('reads the dirty ranges without clearing them, and resets them all', () => {
    const mem = layout();
    mem.writeU32LE(G(7 * PAGE), 1);
    mem.writeU32LE(G(35 * PAGE), 1);
    const expected = [
      { start: 7 * PAGE, length: PAGE },
      { start: 35 * PAGE, length: PAGE },
    ];
    assert.deepEqual(mem.dirtyRanges(), expected);
    assert.deepEqual(mem.dirtyRanges(), expected);
    mem.resetDirty();
    assert.deepEqual(mem.dirtyRanges(), []);
  });

  it('refuses a bitmap it cannot harvest, before taking any bit', () => {
    class CountingBitmap extends NoopBitmap {}
    const custom: Bitmap = new CountingBitmap();
    const mem = GuestMemory.fromRegions([
      new GuestMemoryRegion(G(0), heapBackend(PAGE), { bitmap: new AtomicBitmap(PAGE) }),
      new GuestMemoryRegion(G(PAGE), heapBackend(PAGE), { bitmap: custom }),
    ]);
    mem.writeU8(G(0), 1);
    for (const op of [() => mem.harvestDirty(), () => mem.dirtyRanges(), () => mem.resetDirty()]) {
      assert.throws(op, { code: 'ERR_NOT_TRACKED', address: PAGE, length: PAGE });
    }
    assert.equal(mem.regions()[0].bitmap.dirtyAt(0), true, 'the tracked region kept its page');
    assert.throws(() => mem.mergeDirtyLog(G(PAGE), kvmLog(1, [0])), { code: 'ERR_NOT_TRACKED' });
  });

  it('merges a per-region log (KVM_GET_DIRTY_LOG layout) into the region that starts there', () => {
    const mem = layout();
    mem.mergeDirtyLog(G(4 * PAGE), kvmLog(1, [1, 3]));
    assert.deepEqual(mem.harvestDirty(), [
      { start: 5 * PAGE, length: PAGE },
      { start: 7 * PAGE, length: PAGE },
    ]);
    assert.throws(() => mem.mergeDirtyLog(G(5 * PAGE), kvmLog(1, [0])), { code: 'ERR_REGION_NOT_FOUND', address: 5 * PAGE });
    assert.throws(() => mem.mergeDirtyLog(G(16 * PAGE), kvmLog(1, [0])), { code: 'ERR_NOT_TRACKED' });
    assert.throws(() => mem.mergeDirtyLog(G(-1), kvmLog(1, [0])), { code: 'ERR_INVALID_ADDRESS' });
    // A page beyond the region: refused whole, nothing merged.
    assert.throws(() => mem.mergeDirtyLog(G(0), kvmLog(1, [2, 4])), { code: 'ERR_BITMAP_OUT_OF_RANGE' });
    assert.deepEqual(mem.dirtyRanges(), []);
  });

  it('refuses a log shorter than the region, an empty one too, merging nothing', () => {
    const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), heapBackend(100 * PAGE), { bitmap: new AtomicBitmap(100 * PAGE) })]);
    for (const words of [0, 1]) {
      assert.throws(() => mem.mergeDirtyLog(G(0), kvmLog(words, words > 0 ? [3] : [])), {
        name: 'BitmapError',
        code: 'ERR_BITMAP_LOG_TOO_SHORT',
        length: 8 * words,
        expected: 16,
      });
    }
    assert.deepEqual(mem.dirtyRanges(), []);
    mem.mergeDirtyLog(G(0), kvmLog(2, [3, 99]));
    assert.deepEqual(mem.harvestDirty(), [
      { start: 3 * PAGE, length: PAGE },
      { start: 99 * PAGE, length: PAGE },
    ]);
  });

  describe('regions that mark slices of one bitmap (memory over one backing, with an alias)', () => {
    /**
     * Backing pages [0, 8), one bitmap over them. Guest [0, 4 pages) shows backing [0, 4); an
     * alias at 0x100000 shows backing [2, 4) again; guest 0x10000 shows backing page 5. Backing
     * pages 4, 6 and 7 show nowhere.
     */
    function aliased() {
      const backend = heapBackend(8 * PAGE);
      const bitmap = new AtomicBitmap(8 * PAGE);
      const region = (start: number, offset: number, pages: number) =>
        new GuestMemoryRegion(G(start), backend, { offset, length: pages * PAGE, bitmap: bitmap.sliceAt(offset) });
      const mem = GuestMemory.fromRegions([region(0x100000, 2 * PAGE, 2), region(0, 0, 4), region(0x10000, 5 * PAGE, 1)]);
      return { mem, bitmap };
    }

    it('harvests each backing page once, at the lowest guest address that shows it', () => {
      const { mem, bitmap } = aliased();
      mem.writeU8(G(0x101000), 1); // the alias of backing page 3
      mem.writeU8(G(0x3000), 1); // the same page through its lower address
      mem.writeU8(G(0x10000), 1); // backing page 5
      mem.writeU8(G(0x100000), 1); // the alias of backing page 2
      assert.deepEqual(mem.dirtyRanges(), [
        { start: 0x2000, length: 2 * PAGE },
        { start: 0x10000, length: PAGE },
      ]);
      assert.deepEqual(mem.harvestDirty(), [
        { start: 0x2000, length: 2 * PAGE },
        { start: 0x10000, length: PAGE },
      ]);
      assert.equal(bitmap.count(), 0);
      assert.deepEqual(mem.harvestDirty(), []);
    });

    it('leaves the pages no region shows dirty, in harvest and reset alike', () => {
      const { mem, bitmap } = aliased();
      bitmap.markDirty(4 * PAGE, 1); // e.g. written while it was mapped, before the layout changed
      bitmap.markDirty(7 * PAGE, 1);
      mem.writeU8(G(0), 1);
      assert.deepEqual(mem.harvestDirty(), [{ start: 0, length: PAGE }]);
      mem.writeU8(G(0), 1);
      mem.resetDirty();
      assert.deepEqual(pagesOf(bitmap), [4, 7]);
    });

    it('merges a per-region log into the slice of the region that starts there', () => {
      const { mem, bitmap } = aliased();
      mem.mergeDirtyLog(G(0x100000), kvmLog(1, [1])); // alias page 1: backing page 3
      assert.deepEqual(pagesOf(bitmap), [3]);
      assert.throws(() => mem.mergeDirtyLog(G(0x100000), kvmLog(1, [2])), { code: 'ERR_BITMAP_OUT_OF_RANGE', address: 2 * PAGE });
      assert.deepEqual(mem.harvestDirty(), [{ start: 0x3000, length: PAGE }]);
    });

    it('refuses to merge into a slice that does not start on a page of its bitmap', () => {
      const bitmap = new AtomicBitmap(4 * PAGE);
      const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), heapBackend(2 * PAGE), { bitmap: bitmap.sliceAt(0x800) })]);
      assert.throws(() => mem.mergeDirtyLog(G(0), kvmLog(1, [0])), { code: 'ERR_NOT_TRACKED', address: 0, length: 2 * PAGE });
      assert.equal(bitmap.count(), 0);
      mem.writeU8(G(0x1000), 1); // bitmap byte 0x1800: page 1, reported for the bytes the region shows
      assert.deepEqual(mem.harvestDirty(), [{ start: 0x800, length: PAGE }]);
    });
  });

  it('keeps the dirty pages of a region that grows (WebAssembly memory grown, region replaced)', () => {
    const WASM_PAGE = 65536;
    const wasm = newWasmMemory({ initial: 1, maximum: 4 });
    const backend = new WasmMemoryBackend(wasm);
    const bitmap = new AtomicBitmap(WASM_PAGE);
    const holder = new GuestMemoryAtomic(GuestMemory.fromRegions([new GuestMemoryRegion(G(0), backend, { bitmap })]));
    holder.memory().writeU8(G(0x1234), 1);
    wasm.grow(2);
    bitmap.grow(3 * WASM_PAGE);
    const grown = holder.update(() => GuestMemory.fromRegions([new GuestMemoryRegion(G(0), backend, { bitmap })]));
    assert.equal(grown.totalSize, 3 * WASM_PAGE);
    grown.writeU8(G(2 * WASM_PAGE + 5), 1); // in the new pages
    assert.deepEqual(grown.harvestDirty(), [
      { start: PAGE, length: PAGE },
      { start: 2 * WASM_PAGE, length: PAGE },
    ]);
  });

  it('loses no page that 4 workers write while the main thread harvests in rounds', async (t) => {
    const WORKERS = 4;
    const spec = [
      { start: 0, pages: 8192 },
      { start: 8192 * PAGE, pages: 8192 }, // adjacent
      { start: 32768 * PAGE, pages: 16384 }, // after a hole
    ];
    const regions = spec.map(({ start, pages }) => {
      const buffer = new SharedArrayBuffer(pages * PAGE);
      const bitmap = new AtomicBitmap(pages * PAGE, { shared: true });
      return { start, buffer, bitmap };
    });
    const mem = GuestMemory.fromRegions(regions.map((r) => new GuestMemoryRegion(G(r.start), sharedBackend(r.buffer), { bitmap: r.bitmap })));
    const go = new Int32Array(new SharedArrayBuffer(4));
    const logs: Uint32Array[] = [];
    let running = WORKERS;
    const exits = Array.from({ length: WORKERS }, (_, i) => {
      const workerData: WritePagesData = {
        regions: regions.map((r) => ({ start: r.start, buffer: r.buffer, bitmap: r.bitmap.share() })),
        pageSize: PAGE,
        worker: i,
        workers: WORKERS,
        seed: 0x2545f491 * (i + 1),
        go: go.buffer as SharedArrayBuffer,
      };
      const w = new Worker(new URL('./test-workers/write-pages.js', import.meta.url), { workerData });
      w.once('message', (log: Uint32Array) => logs.push(log));
      return {
        online: new Promise((resolve) => w.once('online', resolve)),
        exited: new Promise<void>((resolve, reject) => {
          w.once('error', reject);
          w.once('exit', (code) => {
            running--;
            if (code === 0) resolve();
            else reject(new Error(`worker ${i} exited with ${code}`));
          });
        }),
      };
    });
    const allDone = Promise.all(exits.map((e) => e.exited));
    allDone.catch(() => {});
    await Promise.race([Promise.all(exits.map((e) => e.online)), allDone]);
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);

    const harvested = new Set<number>();
    let rounds = 0;
    let busyRounds = 0;
    const take = () => {
      const ranges = mem.harvestDirty();
      for (const { start, length } of ranges) for (let p = start / PAGE; p < (start + length) / PAGE; p++) harvested.add(p);
      return ranges.length;
    };
    while (running > 0) {
      rounds++;
      if (take() > 0 && running > 0) busyRounds++;
      await setImmediate();
    }
    await allDone;
    take();

    const written = new Set<number>();
    for (const log of logs) for (const p of log) written.add(p);
    const writes = logs.reduce((n, log) => n + log.length, 0);
    t.diagnostic(`${writes} writes to ${written.size} distinct pages; ${rounds} harvest rounds, ${busyRounds} non-empty while writing`);
    assert.equal(logs.length, WORKERS);
    assert.ok(busyRounds > 0, 'no harvest ran while the workers were writing');
    const lost = [...written].filter((p) => !harvested.has(p));
    const extra = [...harvested].filter((p) => !written.has(p));
    assert.deepEqual(lost, [], 'dirty pages lost');
    assert.deepEqual(extra, [], 'pages reported dirty that no worker wrote');
    assert.deepEqual(mem.dirtyRanges(), []);
  });
});
