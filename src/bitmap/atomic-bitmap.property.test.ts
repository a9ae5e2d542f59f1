import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AtomicBitmap, type DirtyRange } from './atomic-bitmap.js';
import { kvmLog, pagesOf } from '../test-support/bitmap.js';

/** The model: one boolean per page. */
class Model {
  pages: boolean[];

  constructor(
    public byteLength: number,
    readonly pageSize: number,
  ) {
    this.pages = new Array<boolean>(Math.ceil(byteLength / pageSize)).fill(false);
  }

  /** Sets pages touched by an in-range `[offset, offset + length)`; false when out of range. */
  fill(offset: number, length: number, value: boolean): boolean {
    if (offset + length > this.byteLength) return false;
    for (let b = offset; b < offset + length; b += 1) this.pages[Math.floor(b / this.pageSize)] = value;
    return true;
  }

  dirty(): number[] {
    return this.pages.flatMap((d, p) => (d ? [p] : []));
  }

  ranges(): DirtyRange[] {
    const out: DirtyRange[] = [];
    for (let p = 0; p < this.pages.length; p++) {
      if (!this.pages[p] || (p > 0 && this.pages[p - 1])) continue;
      let end = p;
      while (end < this.pages.length && this.pages[end]) end++;
      const offset = p * this.pageSize;
      out.push({ offset, length: Math.min(end * this.pageSize, this.byteLength) - offset });
    }
    return out;
  }
}

type Op =
  | { op: 'mark' | 'reset'; offset: number; length: number }
  | { op: 'sliceMark'; base: number; offset: number; length: number }
  | { op: 'merge'; words: number; pages: number[] }
  | { op: 'grow'; by: number }
  | { op: 'resetAll' | 'harvest' | 'count' | 'ranges' };

const geometry = fc.record({
  pageSize: fc.constantFrom(1, 8, 64, 4096),
  pages: fc.integer({ min: 0, max: 300 }),
  shortBy: fc.nat(),
  shared: fc.boolean(),
});

function opsFor(span: number, pageSize: number): fc.Arbitrary<Op[]> {
  // Offsets and lengths reach a little past the end, so that refusals are exercised too.
  const offset = fc.integer({ min: 0, max: span + 2 * pageSize });
  const length = fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: span + pageSize }));
  const page = fc.integer({ min: 0, max: Math.ceil(span / pageSize) + 70 });
  return fc.array(
    fc.oneof(
      fc.record({ op: fc.constantFrom('mark' as const, 'reset' as const), offset, length }),
      fc.record({ op: fc.constant('sliceMark' as const), base: offset, offset, length }),
      fc.record({ op: fc.constant('merge' as const), words: fc.integer({ min: 0, max: 8 }), pages: fc.array(page, { maxLength: 6 }) }),
      fc.record({ op: fc.constant('grow' as const), by: fc.integer({ min: 0, max: 40 * pageSize }) }),
      fc.record({ op: fc.constantFrom('resetAll' as const, 'harvest' as const, 'count' as const, 'ranges' as const) }),
    ),
    { maxLength: 40 },
  );
}

describe('AtomicBitmap against a boolean-array model', () => {
  it('gives the same answers for random sequences of operations', () => {
    const scenario = geometry.chain((g) => {
      const byteLength = g.pages === 0 ? 0 : g.pages * g.pageSize - (g.shortBy % g.pageSize);
      return fc.tuple(fc.constant({ ...g, byteLength }), opsFor(byteLength, g.pageSize));
    });
    fc.assert(
      fc.property(scenario, ([g, ops]) => {
        const maxByteLength = g.byteLength + 41 * 40 * g.pageSize;
        const b = new AtomicBitmap(g.byteLength, {
          pageSize: g.pageSize,
          shared: g.shared,
          maxByteLength: g.shared ? maxByteLength : undefined,
        });
        const m = new Model(g.byteLength, g.pageSize);
        for (const o of ops) {
          switch (o.op) {
            case 'mark':
            case 'reset': {
              const act = () => (o.op === 'mark' ? b.markDirty(o.offset, o.length) : b.resetRange(o.offset, o.length));
              if (m.fill(o.offset, o.length, o.op === 'mark')) act();
              else assert.throws(act, { code: 'ERR_BITMAP_OUT_OF_RANGE' });
              break;
            }
            case 'sliceMark': {
              if (o.base > m.byteLength) {
                assert.throws(() => b.sliceAt(o.base), { code: 'ERR_BITMAP_OUT_OF_RANGE' });
              } else if (m.fill(o.base + o.offset, o.length, true)) {
                b.sliceAt(o.base).markDirty(o.offset, o.length);
              } else {
                assert.throws(() => b.sliceAt(o.base).markDirty(o.offset, o.length), {
                  code: 'ERR_BITMAP_OUT_OF_RANGE',
                  address: o.offset,
                });
              }
              break;
            }
            case 'merge': {
              const inLog = o.pages.filter((p) => p < o.words * 64);
              const log = kvmLog(o.words, inLog);
              if (o.words < Math.ceil(m.pages.length / 64)) {
                assert.throws(() => b.merge(log), { code: 'ERR_BITMAP_LOG_TOO_SHORT', length: o.words * 8 });
              } else if (inLog.every((p) => p < m.pages.length)) {
                b.merge(log);
                for (const p of inLog) m.pages[p] = true;
              } else {
                assert.throws(() => b.merge(log), { code: 'ERR_BITMAP_OUT_OF_RANGE' });
              }
              break;
            }
            case 'grow': {
              b.grow(m.byteLength + o.by);
              m.byteLength += o.by;
              while (m.pages.length < Math.ceil(m.byteLength / m.pageSize)) m.pages.push(false);
              break;
            }
            case 'resetAll':
              b.resetAll();
              m.pages.fill(false);
              break;
            case 'harvest':
              assert.deepEqual(pagesOf(b.harvest()), m.dirty());
              m.pages.fill(false);
              break;
            case 'count':
              assert.equal(b.count(), m.dirty().length);
              break;
            case 'ranges':
              assert.deepEqual([...b.dirtyRanges()], m.ranges());
              break;
          }
          assert.equal(b.byteLength, m.byteLength);
        }
        assert.deepEqual(pagesOf(b), m.dirty());
        assert.deepEqual([...b.dirtyRanges()], m.ranges());
      }),
      { numRuns: 300 },
    );
  });
});
