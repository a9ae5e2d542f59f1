/** The split queue: configuration checks, pop with wrap, used ring, notification suppression. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { heapBackend } from '../backend/buffer.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import type { DescriptorChain } from './chain.js';
import { VirtqueueDriver } from './driver.js';
import { SplitQueue, VIRTQ_AVAIL_F_NO_INTERRUPT } from './queue.js';
import { G, defaultMemory, setup, virtioError } from './test-support/setup.js';

const one = new Uint8Array([1]);

/** vring_need_event from the spec, on plain numbers. */
function needEvent(event: number, now: number, old: number): boolean {
  return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
}

describe('SplitQueue configuration', () => {
  const mem = defaultMemory();
  const ok = { size: 16, descTable: G(0), availRing: G(0x100), usedRing: G(0x200) };

  test('ERR_VIRTQ_SIZE: zero, not a power of two, above 32768', () => {
    for (const size of [0, 3, 48, 65536, 1.5, -16]) {
      assert.throws(() => new SplitQueue(mem, { ...ok, size }), virtioError('ERR_VIRTQ_SIZE'), String(size));
    }
    assert.equal(new SplitQueue(GuestMemory.fromRanges([[G(0), 0x100000]]), { ...ok, size: 32768, availRing: G(0x80000), usedRing: G(0x90000) }).size, 32768);
  });

  test('ERR_VIRTQ_ALIGNMENT: descriptor table 16, available ring 2, used ring 4', () => {
    assert.throws(() => new SplitQueue(mem, { ...ok, descTable: G(8) }), virtioError('ERR_VIRTQ_ALIGNMENT', { address: 8 }));
    assert.throws(() => new SplitQueue(mem, { ...ok, availRing: G(0x101) }), virtioError('ERR_VIRTQ_ALIGNMENT', { address: 0x101 }));
    assert.throws(() => new SplitQueue(mem, { ...ok, usedRing: G(0x202) }), virtioError('ERR_VIRTQ_ALIGNMENT', { address: 0x202 }));
    assert.equal(new SplitQueue(mem, { ...ok, availRing: G(0x102), usedRing: G(0x204) }).availRing, 0x102);
  });

  test('ERR_VIRTQ_RING_ADDRESS: each ring must lie wholly in guest memory', () => {
    // The used ring of 16 entries is 6 + 128 bytes: at 0xff80 it runs into the hole at 0x10000.
    assert.throws(() => new SplitQueue(mem, { ...ok, usedRing: G(0xff80) }), virtioError('ERR_VIRTQ_RING_ADDRESS', { address: 0xff80, length: 134 }));
    assert.throws(() => new SplitQueue(mem, { ...ok, descTable: G(0x10000) }), virtioError('ERR_VIRTQ_RING_ADDRESS'));
    assert.throws(() => new SplitQueue(mem, { ...ok, availRing: G(0xffe0) }), virtioError('ERR_VIRTQ_RING_ADDRESS', { length: 38 }));
  });

  test('ERR_VIRTQ_RING_ADDRESS: the used ring, which the device writes, may not be in read-only memory', () => {
    const rom = GuestMemory.fromRegions([
      new GuestMemoryRegion(G(0), heapBackend(0x1000), { readOnly: true }),
      new GuestMemoryRegion(G(0x1000), heapBackend(0x1000)),
    ]);
    assert.throws(() => new SplitQueue(rom, ok), virtioError('ERR_VIRTQ_RING_ADDRESS', { address: 0x200 }));
    assert.equal(new SplitQueue(rom, { ...ok, usedRing: G(0x1000) }).usedRing, 0x1000, 'tables and avail ring may be');
    assert.throws(() => new SplitQueue(rom, { ...ok, usedRing: G(0xfc0) }), virtioError('ERR_VIRTQ_RING_ADDRESS', { address: 0xfc0 }));
  });

  test('ERR_INVALID_ARG: malformed addresses and indices, or no GuestMemory', () => {
    assert.throws(() => new SplitQueue(mem, { ...ok, descTable: Number.NaN as never }), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => new SplitQueue(mem, { ...ok, lastAvailIdx: 0x10000 }), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => new SplitQueue(mem, { ...ok, usedIdx: -1 }), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => new SplitQueue({} as GuestMemory, ok), virtioError('ERR_INVALID_ARG'));
  });

  test('the used index starts from the used ring in memory unless given', () => {
    const m = defaultMemory();
    m.writeU16LE(G(0x202), 77);
    assert.equal(new SplitQueue(m, ok).usedIdx, 77);
    assert.equal(new SplitQueue(m, { ...ok, usedIdx: 5 }).usedIdx, 5);
  });

  test('setMemory: swaps memory when the rings fit, keeps the old one otherwise', () => {
    const { q, drv } = setup();
    const small = GuestMemory.fromRanges([[G(0), 0x100]]);
    assert.throws(() => q.setMemory(small), virtioError('ERR_VIRTQ_RING_ADDRESS'));
    assert.equal(q.memory, drv.memory);
    drv.post([one], []);
    // The same backing seen through a new GuestMemory value (as a new vhost-user table gives).
    const again = GuestMemory.fromRegions(drv.memory.regions());
    q.setMemory(again);
    assert.equal(q.memory, again);
    assert.equal(q.pop()?.memory, again);
  });
});

describe('SplitQueue available ring', () => {
  test('pop returns chains in the order made available, then undefined', () => {
    const { q, drv } = setup();
    const heads = [drv.post([one], []).head, drv.post([one], [4]).head, drv.post([], [4]).head];
    assert.equal(q.availableCount(), 3);
    assert.deepEqual([q.pop()?.head, q.pop()?.head, q.pop()?.head], heads);
    assert.equal(q.pop(), undefined);
    assert.equal(q.lastAvailIdx, 3);
  });

  test('indices wrap at 2^16, and a queue resumes from a saved base', () => {
    const { q: _, drv, mem } = setup(4);
    drv.setAvailIdx(0xfffe);
    const q = new SplitQueue(mem, { ...drv.queueConfig(), lastAvailIdx: 0xfffe });
    const heads = [0, 1, 2].map(() => drv.post([one], []).head);
    assert.equal(drv.availIdx, 1);
    assert.equal(q.availableCount(), 3);
    assert.equal(q.pop()?.head, heads[0]);
    assert.equal(q.lastAvailIdx, 0xffff);
    // GET_VRING_BASE, then a new queue (a restarted backend) at that base.
    const resumed = new SplitQueue(mem, { ...drv.queueConfig(), lastAvailIdx: q.lastAvailIdx });
    assert.deepEqual([resumed.pop()?.head, resumed.pop()?.head, resumed.pop()], [heads[1], heads[2], undefined]);
    assert.equal(resumed.lastAvailIdx, 1);
  });

  test('ERR_VIRTQ_AVAIL_COUNT: the driver claims more entries than the queue has', () => {
    const { q, drv } = setup(8);
    drv.setAvailIdx(9);
    assert.throws(() => q.pop(), virtioError('ERR_VIRTQ_AVAIL_COUNT', { index: 9 }));
    assert.equal(q.lastAvailIdx, 0, 'nothing consumed');
    drv.setAvailIdx(8);
    assert.equal(q.availableCount(), 8);
    drv.setAvailIdx(0xffff); // "behind" the device by one: 65535 new entries
    assert.throws(() => q.availableCount(), virtioError('ERR_VIRTQ_AVAIL_COUNT'));
  });

  test('ERR_VIRTQ_AVAIL_COUNT from enableNotification leaves the flags and avail_event as they were', () => {
    for (const eventIdx of [false, true]) {
      const { q, drv, mem } = setup(8, { eventIdx });
      q.disableNotification();
      drv.post([one], []);
      q.pop();
      const usedFlags = q.usedRing;
      const availEvent = G(q.usedRing + 4 + 8 * q.size);
      const before = [mem.readU16LE(usedFlags), mem.readU16LE(availEvent)];
      drv.setAvailIdx(q.lastAvailIdx + 9);
      assert.throws(() => q.enableNotification(), virtioError('ERR_VIRTQ_AVAIL_COUNT', { index: 10 }), `eventIdx ${eventIdx}`);
      assert.deepEqual([mem.readU16LE(usedFlags), mem.readU16LE(availEvent)], before, `eventIdx ${eventIdx}`);
    }
  });

  test('undoPop gives the chain back', () => {
    const { q, drv } = setup();
    const h = drv.post([one], []).head;
    q.pop();
    q.undoPop();
    assert.equal(q.lastAvailIdx, 0);
    assert.equal((q.pop() as DescriptorChain).head, h);
  });
});

describe('SplitQueue used ring', () => {
  test('addUsed publishes entries the driver reads back', () => {
    const { q, drv } = setup();
    const a = drv.post([one], [10]).head;
    const b = drv.post([one], [20]).head;
    q.pop();
    q.pop();
    q.addUsed(b, 20);
    q.addUsed(a, 3);
    assert.deepEqual(drv.used(), [
      { id: b, len: 20 },
      { id: a, len: 3 },
    ]);
    assert.equal(q.usedIdx, 2);
  });

  test('pushUsed batches: nothing is visible until publishUsed', () => {
    const { q, drv } = setup();
    for (let i = 0; i < 3; i++) drv.post([one], []);
    for (let i = 0; i < 3; i++) q.pushUsed((q.pop() as DescriptorChain).head, i);
    assert.deepEqual(drv.used(), []);
    q.publishUsed();
    assert.deepEqual(drv.used().map((e) => e.len), [0, 1, 2]);
  });

  test('the used index wraps at 2^16', () => {
    const { mem, drv } = setup(4);
    mem.writeU16LE(G(drv.usedRing + 2), 0xffff);
    const q = new SplitQueue(mem, drv.queueConfig());
    q.addUsed(1, 1);
    q.addUsed(2, 2);
    assert.equal(q.usedIdx, 1);
    assert.equal(mem.readU16LE(G(drv.usedRing + 2)), 1);
    // Slot 0xffff & 3 = 3, then slot 0.
    assert.equal(mem.readU32LE(G(drv.usedRing + 4 + 8 * 3)), 1);
    assert.equal(mem.readU32LE(G(drv.usedRing + 4)), 2);
  });

  test('ERR_VIRTQ_USED_HEAD and ERR_INVALID_ARG: a bad head or length writes nothing', () => {
    const { q, drv } = setup();
    assert.throws(() => q.addUsed(16, 0), virtioError('ERR_VIRTQ_USED_HEAD', { index: 16 }));
    assert.throws(() => q.addUsed(0, 2 ** 32), virtioError('ERR_INVALID_ARG'));
    assert.throws(() => q.addUsed(0, 0.5), virtioError('ERR_INVALID_ARG'));
    assert.equal(q.usedIdx, 0);
    assert.deepEqual(drv.used(), []);
  });
});

describe('SplitQueue notifications', () => {
  test('without EVENT_IDX: interrupt unless NO_INTERRUPT, never for nothing', () => {
    const { q, drv } = setup();
    assert.equal(q.needsNotification(), false, 'nothing published');
    drv.post([one], []);
    q.addUsed((q.pop() as DescriptorChain).head, 0);
    assert.equal(q.needsNotification(), true);
    assert.equal(q.needsNotification(), false, 'already signalled');
    drv.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    drv.post([one], []);
    q.addUsed((q.pop() as DescriptorChain).head, 0);
    assert.equal(q.needsNotification(), false);
  });

  test('without EVENT_IDX: disableNotification sets NO_NOTIFY, enableNotification clears it', () => {
    const { q, drv } = setup();
    q.disableNotification();
    drv.post([one], []);
    assert.equal(drv.kick(), false);
    assert.equal(q.enableNotification(), true, 'a chain is waiting');
    drv.post([one], []);
    assert.equal(drv.kick(), true);
    q.pop();
    q.pop();
    assert.equal(q.enableNotification(), false);
  });

  test('with EVENT_IDX: pop asks for a kick on the next entry (avail_event)', () => {
    const { q, drv } = setup(16, { eventIdx: true });
    drv.post([one], []);
    // avail_event is still 0: publishing entry 0 (idx 0 -> 1) crosses it.
    assert.equal(drv.kick(), true);
    drv.post([one], []);
    assert.equal(drv.kick(), false, 'the device has not consumed entry 0 yet');
    q.pop();
    q.pop();
    drv.post([one], []);
    assert.equal(drv.kick(), true);
    q.disableNotification(); // a no-op under EVENT_IDX
    assert.equal(q.enableNotification(), true);
  });

  test('with EVENT_IDX: interrupt exactly when the used index passes used_event', () => {
    const { q, drv } = setup(16, { eventIdx: true });
    for (let i = 0; i < 6; i++) drv.post([one], []);
    const heads = Array.from({ length: 6 }, () => (q.pop() as DescriptorChain).head);
    drv.setUsedEvent(2); // interrupt when entry 2 (the third) is used
    q.addUsed(heads[0], 0);
    q.addUsed(heads[1], 0);
    assert.equal(q.needsNotification(), false);
    q.addUsed(heads[2], 0);
    assert.equal(q.needsNotification(), true);
    q.addUsed(heads[3], 0);
    assert.equal(q.needsNotification(), false, 'used_event is behind');
    drv.setUsedEvent(4);
    q.pushUsed(heads[4], 0);
    q.pushUsed(heads[5], 0);
    assert.equal(q.needsNotification(), false, 'not published yet');
    q.publishUsed();
    assert.equal(q.needsNotification(), true, 'the batch 4..5 passed used_event 4');
  });

  test('with EVENT_IDX: needsNotification matches vring_need_event across the 16-bit wrap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff })), { maxLength: 12 }),
        (start, batches) => {
          const mem = defaultMemory();
          const drv = new VirtqueueDriver(mem, { size: 8, dataBase: G(0x20000), dataSize: 0x100, eventIdx: true });
          const q = new SplitQueue(mem, { ...drv.queueConfig(), usedIdx: start });
          let used = start;
          for (const [n, event] of batches) {
            drv.setUsedEvent(event);
            for (let i = 0; i < n; i++) q.pushUsed(0, 0);
            q.publishUsed();
            const old = used;
            used = (used + n) & 0xffff;
            assert.equal(q.needsNotification(), n > 0 && needEvent(event, used, old), `old ${old} new ${used} event ${event}`);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
