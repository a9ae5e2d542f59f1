import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BackingViews } from '../backend/views.js';
import { copyPieces, copySmall, moveSmall, SMALL_COPY_MAX } from './pieces.js';

const random = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 151 + seed * 7 + 13) & 0xff);

test('copySmall and copyPieces move exactly the bytes asked, at every alignment, both ways', () => {
  fc.assert(
    fc.property(fc.nat(24), fc.nat(SMALL_COPY_MAX), fc.nat(24), fc.nat(40), fc.boolean(), fc.boolean(), (abs, small, at, long, toMemory, whole) => {
      const n = whole ? long : small;
      const memory = random(64, 1);
      const buf = random(64, 2);
      const [mem0, buf0] = [memory.slice(), buf.slice()];
      const v = new BackingViews(memory.buffer);
      if (whole) copyPieces(v, abs, buf, at, n, toMemory);
      else copySmall(v, abs, buf, at, n, toMemory);
      if (toMemory) mem0.set(buf0.subarray(at, at + n), abs);
      else buf0.set(mem0.subarray(abs, abs + n), at);
      assert.deepEqual(memory, mem0);
      assert.deepEqual(buf, buf0);
    }),
    { numRuns: 2000 },
  );
});

test('a small copy whose buffer overlaps the memory copies as memmove does', () => {
  for (let abs = 0; abs < 16; abs++) {
    for (let at = 0; at < 16; at++) {
      for (let n = 1; n <= SMALL_COPY_MAX; n++) {
        for (const toMemory of [true, false]) {
          const memory = random(32, 3);
          const model = memory.slice();
          copySmall(new BackingViews(memory.buffer), abs, memory, at, n, toMemory);
          if (toMemory) model.copyWithin(abs, at, at + n);
          else model.copyWithin(at, abs, abs + n);
          assert.deepEqual(memory, model, `abs ${abs}, at ${at}, n ${n}, ${toMemory ? 'to' : 'from'} memory`);
        }
      }
    }
  }
});

test('moveSmall copies memory to memory, overlapping or between two buffers', () => {
  for (let src = 0; src < 16; src++) {
    for (let dst = 0; dst < 16; dst++) {
      for (let n = 1; n <= SMALL_COPY_MAX; n++) {
        const memory = random(32, 4);
        const model = memory.slice();
        const v = new BackingViews(memory.buffer);
        moveSmall(v, src, v, dst, n);
        model.copyWithin(dst, src, src + n);
        assert.deepEqual(memory, model, `same buffer: ${src} -> ${dst}, n ${n}`);
        const other = new Uint8Array(32);
        moveSmall(v, src, new BackingViews(other.buffer), dst, n);
        assert.deepEqual(other.subarray(dst, dst + n), memory.subarray(src, src + n), `two buffers: ${src} -> ${dst}, n ${n}`);
      }
    }
  }
});
