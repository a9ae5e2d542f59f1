/**
 * Address -> region lookup (last hit, then the chunk directory and a bounded binary search)
 * held against a linear scan, over layouts from a few pages to 2^50 bytes: tiny regions packed
 * into one directory chunk, regions spanning many chunks, holes, and regions near 2^53.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestAddress } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { adoptBackend } from '../backend/buffer.js';
import { EMPTY_VIEWS } from '../backend/views.js';
import { GuestMemoryRegion } from '../region/region.js';
import { GuestMemory } from './guest-memory.js';

/** A backend of any size with no bytes behind it: enough for lookups, never accessed. */
function sized(size: number): MemoryBackend {
  return { kind: 'sized', size, byteOffset: 0, shared: false, views: () => EMPTY_VIEWS };
}

const layoutArb = fc
  .record({
    scale: fc.integer({ min: 0, max: 38 }),
    first: fc.nat(1000),
    parts: fc.array(fc.record({ gap: fc.oneof(fc.constant(0), fc.nat(2000)), length: fc.integer({ min: 1, max: 2000 }) }), { minLength: 1, maxLength: 80 }),
  })
  .map(({ scale, first, parts }) => {
    // Lengths and gaps scaled by a random power of two, with a jitter so boundaries fall anywhere.
    const unit = 2 ** scale;
    const regions: [number, number][] = [];
    let at = first * unit;
    for (const [k, p] of parts.entries()) {
      at += k === 0 ? 0 : p.gap * unit + (p.gap > 0 ? k : 0);
      const length = p.length * unit + k;
      regions.push([at, length]);
      at += length;
    }
    return regions;
  })
  .filter((regions) => regions.every(([s, l]) => s + l <= Number.MAX_SAFE_INTEGER));

test('findRegion agrees with a linear scan at every boundary and at random addresses', () => {
  fc.assert(
    fc.property(layoutArb, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }), (regions, fractions) => {
      const mem = GuestMemory.fromRegions(regions.map(([s, l]) => new GuestMemoryRegion(GuestAddress(s), sized(l))));
      const end = regions[regions.length - 1][0] + regions[regions.length - 1][1];
      const probes = new Set<number>([0, end, end + 1]);
      for (const [s, l] of regions) for (const a of [s - 1, s, s + 1, s + l - 1, s + l]) if (a >= 0) probes.add(a);
      for (const f of fractions) probes.add(Math.floor(f * end));
      for (const a of probes) {
        if (a > Number.MAX_SAFE_INTEGER) continue;
        const want = regions.find(([s, l]) => a >= s && a < s + l);
        const got = mem.findRegion(GuestAddress(a));
        assert.equal(got?.start, want?.[0], `address ${a}`);
        assert.equal(mem.addressInRange(GuestAddress(a)), want !== undefined);
      }
    }),
    { numRuns: 300 },
  );
});

test('a region near 2^53 is found, and addresses past the end are not', () => {
  const top = Number.MAX_SAFE_INTEGER - 0x1000; // ends at 2^53 - 1, the highest end allowed
  const mem = GuestMemory.fromRegions([
    new GuestMemoryRegion(GuestAddress(0), sized(0x1000)),
    new GuestMemoryRegion(GuestAddress(top), sized(0x1000)),
  ]);
  assert.equal(mem.findRegion(GuestAddress(top))?.start, top);
  assert.equal(mem.findRegion(GuestAddress(Number.MAX_SAFE_INTEGER - 1))?.start, top);
  assert.equal(mem.findRegion(GuestAddress(Number.MAX_SAFE_INTEGER)), undefined);
  assert.equal(mem.findRegion(GuestAddress(0xfff))?.start, 0);
  assert.equal(mem.findRegion(GuestAddress(0x1000)), undefined);
  assert.equal(mem.findRegion(GuestAddress(top - 1)), undefined);
});

test('typed accesses resolve through the directory like a linear scan, over sparse layouts', () => {
  const layout = fc
    .array(fc.record({ gap: fc.nat(3 << 20), length: fc.integer({ min: 1, max: 64 }).map((p) => p * 512) }), { minLength: 2, maxLength: 24 })
    .map((parts) => {
      let at = 0;
      return parts.map(({ gap, length }) => {
        const start = at + gap;
        at = start + length;
        return [start, length] as const;
      });
    });
  fc.assert(
    fc.property(layout, fc.array(fc.tuple(fc.nat(), fc.boolean(), fc.nat(0xffff_ffff)), { minLength: 1, maxLength: 300 }), (regions, ops) => {
      // All regions carved from one buffer, so that only the bounds checks keep them apart.
      const all = new Uint8Array(regions.reduce((n, [, l]) => n + l, 0));
      let carved = 0;
      const mem = GuestMemory.fromRegions(
        regions.map(([s, l]) => new GuestMemoryRegion(GuestAddress(s), adoptBackend(all.subarray(carved, (carved += l))))),
      );
      const end = regions[regions.length - 1][0] + regions[regions.length - 1][1];
      const model = new Map<number, number>(); // byte address -> value, for written bytes
      for (const [pick, write, value] of ops) {
        // Half the addresses land near a region boundary, half anywhere.
        const [s, l] = regions[pick % regions.length];
        const a = pick % 2 === 0 ? s + l - 4 + ((pick >>> 1) % 8) - 2 : pick % (end + 8);
        const inside = regions.some(([rs, rl]) => a >= rs && a + 4 <= rs + rl);
        const mapped = (x: number) => regions.some(([rs, rl]) => x >= rs && x < rs + rl);
        const whole = [0, 1, 2, 3].every((i) => mapped(a + i));
        if (write) {
          if (whole) {
            mem.writeU32LE(GuestAddress(a), value);
            for (let i = 0; i < 4; i++) model.set(a + i, (value >>> (8 * i)) & 0xff);
          } else {
            assert.throws(() => mem.writeU32LE(GuestAddress(a), value), { code: 'ERR_GUEST_ADDRESS_INVALID' });
          }
        } else if (whole) {
          let want = 0;
          for (let i = 3; i >= 0; i--) want = want * 256 + (model.get(a + i) ?? 0);
          assert.equal(mem.readU32LE(GuestAddress(a)), want, `read at ${a}${inside ? '' : ' (straddling)'}`);
        } else {
          assert.throws(() => mem.readU32LE(GuestAddress(a)), { code: 'ERR_GUEST_ADDRESS_INVALID' });
        }
      }
    }),
    { numRuns: 200 },
  );
});
