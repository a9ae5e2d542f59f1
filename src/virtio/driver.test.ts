/** The test driver: layout, descriptor bookkeeping, and its own argument errors. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DescriptorChain } from './chain.js';
import { splitRingLayout, VirtqueueDriver } from './driver.js';
import { G, defaultMemory, setup, virtioError } from './test-support/setup.js';

describe('VirtqueueDriver', () => {
  test('lays the rings out back to back with the split-ring alignments', () => {
    assert.deepEqual(splitRingLayout(16, 0x1000), { descTable: 0x1000, availRing: 0x1100, usedRing: 0x1128, end: 0x11ae });
    assert.equal(splitRingLayout(1).usedRing % 4, 0);
  });

  test('descriptors come back when the device reports the chain used', () => {
    const { drv, q } = setup(4);
    drv.post([new Uint8Array(1)], [1, 1]);
    assert.equal(drv.freeDescriptors, 1);
    assert.throws(() => drv.post([], [1, 1]), virtioError('ERR_INVALID_ARG'));
    const c = q.pop() as DescriptorChain;
    q.addUsed(c.head, 2);
    assert.deepEqual(drv.used(), [{ id: c.head, len: 2 }]);
    assert.equal(drv.freeDescriptors, 4);
  });

  test('ERR_INVALID_ARG: bad options, an empty chain, a full data area', () => {
    const mem = defaultMemory();
    assert.throws(() => new VirtqueueDriver(mem, { size: 3, dataBase: G(0), dataSize: 1 }), virtioError('ERR_INVALID_ARG'));
    const { drv } = setup(4, { dataSize: 64 });
    assert.throws(() => drv.post([], []), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => drv.post([], [65]), virtioError('ERR_INVALID_ARG', { length: 65 }));
  });

  test('a post that fails takes neither descriptors nor data area', () => {
    const { drv } = setup(4, { dataSize: 64 });
    assert.throws(() => drv.post([], [8, 8, 8, 8, 8]), virtioError('ERR_INVALID_ARG')); // 5 descriptors of 4
    assert.throws(() => drv.post([new Uint8Array(32)], [40]), virtioError('ERR_INVALID_ARG', { length: 40 }));
    assert.throws(() => drv.post([], [32, 16], { indirect: true }), virtioError('ERR_INVALID_ARG', { length: 32 })); // no room for the table
    assert.equal(drv.freeDescriptors, 4);
    const posted = drv.post([], [64]); // the whole data area is still free
    assert.equal(posted.writable[0].len, 64);
  });
});
