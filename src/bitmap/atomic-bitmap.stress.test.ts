import assert from 'node:assert/strict';
import { setImmediate } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { AtomicBitmap } from './atomic-bitmap.js';
import { startWorkers } from '../test-support/workers.js';
import type { MarkPagesData } from './test-workers/mark-pages.js';

const WORKERS = 4;
const PAGE = 64;
const PAGES = 1 << 22;

describe('AtomicBitmap shared by workers', () => {
  it('loses no page while the main thread harvests concurrently', async (t) => {
    const bitmap = new AtomicBitmap(PAGES * PAGE, { pageSize: PAGE, shared: true });
    const description = bitmap.share();
    const go = new Int32Array(new SharedArrayBuffer(4));
    const logs: Uint32Array[] = [];
    const data = Array.from({ length: WORKERS }, (_, worker): MarkPagesData => {
      const seed = 0x9e3779b9 * (worker + 1);
      return { description, worker, workers: WORKERS, seed, go: go.buffer as SharedArrayBuffer };
    });
    const workers = startWorkers(new URL('./test-workers/mark-pages.js', import.meta.url), data, (_, log) => logs.push(log as Uint32Array));
    await workers.online;
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);

    // Harvest as often as possible while the workers mark; look at what was taken afterwards.
    const takes: AtomicBitmap[] = [];
    let roundsWhileMarking = 0;
    while (workers.running() > 0) {
      takes.push(bitmap.harvest());
      if (workers.running() > 0 && takes[takes.length - 1].count() > 0) roundsWhileMarking++;
      await setImmediate();
    }
    await workers.exited;
    takes.push(bitmap.harvest()); // the final harvest, after every worker is done

    const harvested = new Uint8Array(PAGES);
    let total = 0;
    let twice = 0;
    for (const taken of takes) {
      for (const { offset, length } of taken.dirtyRanges()) {
        for (let p = offset / PAGE; p < (offset + length) / PAGE; p++) {
          if (harvested[p] === 1) twice++;
          harvested[p] = 1;
        }
      }
      total += taken.count();
    }

    const marked = new Uint8Array(PAGES);
    let markedTotal = 0;
    for (const log of logs) {
      for (const p of log) marked[p] = 1;
      markedTotal += log.length;
    }
    t.diagnostic(`${markedTotal} pages marked by ${WORKERS} workers; ${takes.length} harvests, ${roundsWhileMarking} of them non-empty while the workers marked`);
    assert.equal(logs.length, WORKERS);
    assert.ok(roundsWhileMarking > 0, 'no harvest ran while the workers were marking');
    assert.equal(twice, 0, 'a page was harvested twice but marked once');
    assert.equal(total, markedTotal);
    let lost = 0;
    for (let p = 0; p < PAGES; p++) if (marked[p] !== harvested[p]) lost++;
    assert.equal(lost, 0);
    assert.equal(bitmap.count(), 0);
  });
});
