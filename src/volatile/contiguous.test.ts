import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { test } from 'node:test';
import { GuestAddress, MemoryRegionAddress } from '../address/address.js';
import { heapBackend } from '../backend/buffer.js';
import { GuestMemoryRegion } from '../region/region.js';
import type { ContiguousBytes } from './contiguous.js';
import { VolatileSlice } from './slice.js';

/** Each kind of contiguous memory with its length: a slice, a region, a slice of a region. */
function contiguous(): [string, ContiguousBytes<number>, number][] {
  const region = new GuestMemoryRegion(GuestAddress(0x1000), heapBackend(0x100));
  return [
    ['slice', new VolatileSlice(new Uint8Array(16)), 16],
    ['region', region as ContiguousBytes<number>, 0x100],
    ['slice of a region', region.getSlice(MemoryRegionAddress(0x80), 0x10), 0x10],
  ];
}

test('a partial read or write that starts at the end of a slice or region is out of bounds; an empty one returns 0', () => {
  const zero = openSync('/dev/zero', 'r');
  try {
    for (const [kind, m, end] of contiguous()) {
      for (const [op, run] of [
        ['read', () => m.read(end, new Uint8Array(4))],
        ['write', () => m.write(end, new Uint8Array(4))],
        ['readVolatileFrom', () => m.readVolatileFrom(end, zero, 4, 0)],
      ] as [string, () => number][]) {
        assert.throws(run, { name: 'VolatileMemoryError', code: 'ERR_OUT_OF_BOUNDS', address: end, length: 4 }, `${kind}: ${op} at the end`);
      }
      assert.equal(m.write(end - 1, Uint8Array.of(7, 8)), 1, `${kind}: the last byte still moves`);
      assert.equal(m.read(end, new Uint8Array(0)), 0, `${kind}: an empty buffer at the end`);
      assert.equal(m.write(end + 8, new Uint8Array(0)), 0, `${kind}: an empty buffer past the end`);
      assert.equal(m.readVolatileFrom(end, zero, 0, 0), 0, `${kind}: no bytes from an fd at the end`);
      // The loop every caller writes: it ends with the error instead of spinning on 0.
      let at = 0;
      let calls = 0;
      assert.throws(() => {
        for (; calls < 1000; calls++) at += m.write(at, new Uint8Array(6));
      }, { code: 'ERR_OUT_OF_BOUNDS', address: end });
      assert.deepEqual([at, calls], [end, Math.ceil(end / 6)], `${kind}: the loop filled the memory, then stopped`);
    }
  } finally {
    closeSync(zero);
  }
});
