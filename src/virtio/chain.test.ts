/** Descriptor chains: honest chains read back as posted; every hostile rule ends in its code. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { heapBackend } from '../backend/buffer.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { DescriptorChain, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from './chain.js';
import { G, defaultMemory, setup, trackedMemory, virtioError } from './test-support/setup.js';

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;

/** A queue whose table the test writes by hand, and the chain at `head` once published. */
function raw(size = 16) {
  const { drv, q, mem } = setup(size);
  return {
    drv,
    mem,
    chain(head = 0): DescriptorChain {
      drv.publish(head);
      return q.pop() as DescriptorChain;
    },
  };
}

describe('DescriptorChain', () => {
  test('a direct chain yields its descriptors in order, with fields and direction', () => {
    const { drv, q } = setup();
    const posted = drv.post([new Uint8Array(16)], [512, 1]);
    const chain = q.pop() as DescriptorChain;
    assert.equal(chain.head, posted.head);
    const descs = chain.descriptors();
    assert.deepEqual(
      descs.map((d) => [d.addr, d.len, d.writable]),
      [...posted.readable.map((b) => [b.addr, b.len, false]), ...posted.writable.map((b) => [b.addr, b.len, true])],
    );
    assert.equal(descs[0].flags, NEXT);
    assert.equal(descs[2].flags, WRITE);
  });

  test('an indirect chain is followed: the table entries are yielded, not the pointer', () => {
    const { drv, q } = setup();
    const posted = drv.post([new Uint8Array(16), new Uint8Array(8)], [64], { indirect: true });
    const descs = (q.pop() as DescriptorChain).descriptors();
    assert.deepEqual(
      descs.map((d) => [d.index, d.addr, d.len, d.writable]),
      [
        [0, posted.readable[0].addr, 16, false],
        [1, posted.readable[1].addr, 8, false],
        [2, posted.writable[0].addr, 64, true],
      ],
    );
    assert.equal(drv.freeDescriptors, 15, 'an indirect chain takes one slot of the queue table');
  });

  test('direct descriptors may lead to an indirect one; its WRITE flag is ignored', () => {
    const { drv, chain } = raw();
    const table = drv.alloc(32, 16);
    drv.writeDescriptor(0, { addr: table, len: 16, flags: 0, next: 0 }, table);
    drv.writeDescriptor(1, { addr: 0x20100, len: 4, flags: WRITE, next: 0 }, table);
    drv.writeDescriptor(0, { addr: 0x20200, len: 8, flags: NEXT, next: 3 });
    drv.writeDescriptor(3, { addr: table, len: 32, flags: INDIRECT | WRITE, next: 0 });
    drv.writeDescriptor(0, { addr: 0x20300, len: 2, flags: NEXT, next: 1 }, table);
    const descs = chain(0).descriptors();
    assert.deepEqual(descs.map((d) => [d.addr, d.writable]), [
      [0x20200, false],
      [0x20300, false],
      [0x20100, true],
    ]);
  });

  test('zero-length descriptors and buffers crossing adjacent regions are accepted', () => {
    const { drv, q } = setup(16, { mem: trackedMemory().mem, dataBase: 0x8000, dataSize: 0x8000 });
    drv.writeDescriptor(0, { addr: 0x0fff_0000, len: 0, flags: NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: 0xfff0, len: 0x20, flags: 0, next: 0 });
    drv.publish(0);
    assert.deepEqual((q.pop() as DescriptorChain).descriptors().map((d) => [d.addr, d.len]), [
      [0x0fff_0000, 0],
      [0xfff0, 0x20],
    ]);
  });

  test('ERR_DESC_INDEX: a head outside the table', () => {
    assert.throws(() => new DescriptorChain(defaultMemory(), G(0), 16, 16), virtioError('ERR_DESC_INDEX', { index: 16 }));
    const { drv, q } = setup();
    drv.publish(300);
    assert.throws(() => q.pop(), virtioError('ERR_DESC_INDEX', { index: 300 }));
  });

  test('ERR_DESC_INDEX: a next index outside the table', () => {
    const { drv, chain } = raw();
    drv.writeDescriptor(0, { addr: 0x20000, len: 8, flags: NEXT, next: 16 });
    const it = chain(0)[Symbol.iterator]();
    assert.equal(it.next().value?.index, 0, 'the first descriptor is fine');
    assert.throws(() => it.next(), virtioError('ERR_DESC_INDEX', { index: 16 }));
  });

  test('ERR_DESC_CHAIN_TOO_LONG: a loop ends after queue-size descriptors', () => {
    const { drv, chain } = raw(4);
    drv.writeDescriptor(0, { addr: 0x20000, len: 8, flags: NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: 0x20000, len: 8, flags: NEXT, next: 0 });
    const c = chain(0);
    let seen = 0;
    assert.throws(() => {
      for (const _ of c) seen++;
    }, virtioError('ERR_DESC_CHAIN_TOO_LONG'));
    assert.equal(seen, 4);
  });

  test('ERR_DESC_CHAIN_TOO_LONG: a loop inside an indirect table', () => {
    const { drv, chain } = raw();
    const table = drv.alloc(32, 16);
    drv.writeDescriptor(0, { addr: 0x20100, len: 1, flags: NEXT, next: 1 }, table);
    drv.writeDescriptor(1, { addr: 0x20100, len: 1, flags: NEXT, next: 0 }, table);
    drv.writeDescriptor(0, { addr: table, len: 32, flags: INDIRECT, next: 0 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_CHAIN_TOO_LONG'));
  });

  test('ERR_DESC_ADDRESS: a buffer in a hole, or running into one', () => {
    for (const [addr, len] of [
      [0x10000, 1],
      [0xfff0, 0x11],
      [0x4fff0, 0x20],
      [0x50000, 0],
    ]) {
      const { drv, chain } = raw();
      drv.writeDescriptor(0, { addr, len: len === 0 ? 1 : len, flags: 0, next: 0 });
      assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_ADDRESS', { address: addr }), `${addr}+${len}`);
    }
  });

  test('ERR_DESC_OVERFLOW: address + length past 2^53', () => {
    const { drv, chain } = raw();
    drv.writeDescriptor(0, { addr: 2 ** 53 - 16, len: 32, flags: 0, next: 0 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_OVERFLOW', { address: 2 ** 53 - 16, length: 32 }));
  });

  test('ERR_IOVEC_OVERFLOW: buffers of more than 2^32 - 1 bytes in one chain, direct or indirect', () => {
    const mem = GuestMemory.fromRegions([
      new GuestMemoryRegion(G(0), heapBackend(0x10000)),
      new GuestMemoryRegion(G(0x1_0000_0000), heapBackend(0x8000_0000)),
    ]);
    const big = { addr: 0x1_0000_0000, len: 0x8000_0000 };
    const { drv, q } = setup(16, { mem, dataBase: 0x8000, dataSize: 0x8000 });
    // 2^31 + (2^31 - 1) bytes: exactly the limit, accepted.
    drv.writeDescriptor(0, { ...big, flags: NEXT, next: 1 });
    drv.writeDescriptor(1, { ...big, len: 0x7fff_ffff, flags: WRITE, next: 0 });
    drv.publish(0);
    assert.equal((q.pop() as DescriptorChain).descriptors().length, 2);
    // One byte more, reached through a third descriptor: refused there, lazily too.
    drv.writeDescriptor(1, { ...big, len: 0x7fff_ffff, flags: WRITE | NEXT, next: 2 });
    drv.writeDescriptor(2, { addr: 0x8000, len: 1, flags: WRITE, next: 0 });
    drv.publish(0);
    const chain = q.pop() as DescriptorChain;
    assert.throws(() => chain.descriptors(), virtioError('ERR_IOVEC_OVERFLOW', { index: 2, address: 0x8000, length: 2 ** 32 }));
    const it = chain[Symbol.iterator]();
    it.next();
    it.next();
    assert.throws(() => it.next(), virtioError('ERR_IOVEC_OVERFLOW', { index: 2 }));
    // The same through an indirect table: its own length does not count, its entries do.
    const table = 0x9000;
    drv.writeDescriptor(0, { ...big, flags: NEXT, next: 1 }, G(table));
    drv.writeDescriptor(1, { ...big, flags: 0, next: 0 }, G(table));
    drv.writeDescriptor(3, { addr: table, len: 32, flags: INDIRECT, next: 0 });
    drv.publish(3);
    assert.throws(() => (q.pop() as DescriptorChain).descriptors(), virtioError('ERR_IOVEC_OVERFLOW', { index: 1, length: 2 ** 32 }));
  });

  test('ERR_DESC_UNSAFE_ADDRESS: a u64 address that is not a safe integer', () => {
    for (const addr of [2n ** 53n, 0xffff_ffff_ffff_f000n]) {
      const { drv, chain } = raw();
      drv.writeDescriptor(0, { addr, len: 8, flags: 0, next: 0 });
      assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_UNSAFE_ADDRESS', { index: 0 }));
    }
  });

  test('ERR_DESC_READ_AFTER_WRITE: a readable descriptor after a writable one', () => {
    const { drv, chain } = raw();
    drv.writeDescriptor(0, { addr: 0x20000, len: 8, flags: WRITE | NEXT, next: 1 });
    drv.writeDescriptor(1, { addr: 0x20010, len: 8, flags: 0, next: 0 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_READ_AFTER_WRITE', { index: 1 }));
  });

  test('ERR_DESC_INDIRECT_LENGTH: empty, not a multiple of 16, more entries than the queue', () => {
    for (const len of [0, 17, 24, 16 * 17]) {
      const { drv, chain } = raw();
      drv.writeDescriptor(0, { addr: 0x20000, len, flags: INDIRECT, next: 0 });
      assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_INDIRECT_LENGTH', { length: len }), `len ${len}`);
    }
  });

  test('ERR_DESC_ADDRESS: an indirect table outside guest memory', () => {
    const { drv, chain } = raw();
    drv.writeDescriptor(0, { addr: 0xfff0, len: 32, flags: INDIRECT, next: 0 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_ADDRESS', { address: 0xfff0 }));
  });

  test('ERR_DESC_INDIRECT_NESTED: an indirect descriptor inside an indirect table', () => {
    const { drv, chain } = raw();
    const table = drv.alloc(16, 16);
    drv.writeDescriptor(0, { addr: table, len: 16, flags: INDIRECT, next: 0 }, table);
    drv.writeDescriptor(0, { addr: table, len: 16, flags: INDIRECT, next: 0 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_INDIRECT_NESTED'));
  });

  test('ERR_DESC_INDIRECT_NEXT: INDIRECT and NEXT in one descriptor', () => {
    const { drv, chain } = raw();
    const table = drv.alloc(16, 16);
    drv.writeDescriptor(0, { addr: 0x20100, len: 4, flags: 0, next: 0 }, table);
    drv.writeDescriptor(0, { addr: table, len: 16, flags: INDIRECT | NEXT, next: 1 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_INDIRECT_NEXT', { index: 0 }));
  });

  test('ERR_DESC_INDEX: a next index outside the indirect table', () => {
    const { drv, chain } = raw();
    const table = drv.alloc(32, 16);
    drv.writeDescriptor(0, { addr: 0x20100, len: 4, flags: NEXT, next: 2 }, table);
    drv.writeDescriptor(0, { addr: table, len: 32, flags: INDIRECT, next: 0 });
    assert.throws(() => chain(0).descriptors(), virtioError('ERR_DESC_INDEX', { index: 2 }));
  });

  test('iterating twice reads the guest memory again', () => {
    const { drv, chain } = raw();
    drv.writeDescriptor(0, { addr: 0x20000, len: 8, flags: 0, next: 0 });
    const c = chain(0);
    assert.equal(c.descriptors()[0].len, 8);
    drv.writeDescriptor(0, { addr: 0x20000, len: 9, flags: 0, next: 0 });
    assert.equal(c.descriptors()[0].len, 9);
  });
});
