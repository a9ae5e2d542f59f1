import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestAddress } from '../address/address.js';
import { MemoryBacking } from './backing.js';
import { MemoryManager } from './manager.js';
import type { AccessSize } from './regions.js';

const G = GuestAddress;
const SPACE = 0x80;

const region = fc.record({
  kind: fc.constantFrom('ram' as const, 'mmio' as const),
  start: fc.nat(SPACE - 1),
  length: fc.integer({ min: 1, max: 24 }),
  priority: fc.nat(6),
  sizes: fc.subarray<AccessSize>([1, 2, 4], { minLength: 1 }),
});
const access = fc.record({ write: fc.boolean(), addr: fc.nat(SPACE + 4), size: fc.constantFrom<AccessSize>(1, 2, 4), value: fc.nat(0xffffffff) });

test('guest accesses of any size, anywhere, match a byte-by-byte model of the flat view', () => {
  fc.assert(
    fc.property(fc.array(region, { maxLength: 8 }), fc.array(access, { maxLength: 30 }), (regions, accesses) => {
      const mm = new MemoryManager();
      const backing = MemoryBacking.allocate(SPACE * 8);
      const ram = backing.chunks[0].views().u8;
      const devices = new Map<string, Uint8Array>();
      regions.forEach((r, i) => {
        const spec = { name: `${r.kind}${i}`, start: G(r.start), length: r.length, priority: r.priority };
        try {
          if (r.kind === 'ram') mm.addRam({ ...spec, backing, backingOffset: i * SPACE });
          else {
            const mem = new Uint8Array(r.length);
            const handler = {
              read(o: number, s: AccessSize) {
                assert.ok(r.sizes.includes(s) && o + s <= r.length, `read of ${s} at ${o}`);
                let v = 0;
                for (let k = s - 1; k >= 0; k--) v = v * 256 + mem[o + k];
                return v;
              },
              write(o: number, s: AccessSize, v: number) {
                assert.ok(r.sizes.includes(s) && o + s <= r.length, `write of ${s} at ${o}`);
                for (let k = 0; k < s; k++) mem[o + k] = Math.floor(v / 256 ** k) & 0xff;
              },
            };
            mm.addMmio({ ...spec, handler, accessSizes: r.sizes });
            devices.set(spec.name, mem);
          }
        } catch (e) {
          assert.equal((e as { code: string }).code, 'ERR_PRIORITY_OVERLAP');
        }
      });
      // The model: each guest byte is a cell of RAM, a cell of a device, or nothing.
      const cell = (a: number): [Uint8Array, number] | undefined => {
        const s = mm.flatView().find((x) => x.start <= a && a < x.end);
        if (s === undefined) return undefined;
        if (s.kind === 'ram') return [ram, (s.backingOffset as number) + a - s.start];
        return [devices.get(s.source.name) as Uint8Array, s.offset + a - s.start];
      };
      for (const x of accesses) {
        // Where a piece cannot be given in sizes its device takes, the access is refused whole.
        let refusable = false;
        for (let k = 0; k < x.size; k++) {
          const s = mm.flatView().find((y) => y.start <= x.addr + k && x.addr + k < y.end);
          if (s?.kind === 'mmio' && !s.source.accessSizes.includes(1)) refusable = true;
        }
        const snapshot = [ram.slice(), ...[...devices.values()].map((d) => d.slice())];
        let result: number;
        try {
          if (x.write) {
            mm.write(G(x.addr), x.size, x.value % 2 ** (8 * x.size));
            result = -1;
          } else result = mm.read(G(x.addr), x.size);
        } catch (e) {
          assert.ok(refusable, String(e));
          assert.equal((e as { code: string }).code, 'ERR_ACCESS_SIZE');
          assert.deepEqual([ram.slice(), ...[...devices.values()].map((d) => d.slice())], snapshot, 'a refused access changes nothing');
          continue;
        }
        let want = 0;
        for (let k = 0; k < x.size; k++) {
          const c = cell(x.addr + k);
          const byte = Math.floor((x.value % 2 ** (8 * x.size)) / 256 ** k) & 0xff;
          if (x.write) {
            if (c !== undefined) assert.equal(c[0][c[1]], byte, `byte ${k} of a write at ${x.addr}`);
          } else want += (c === undefined ? 0xff : snapshot[c[0] === ram ? 0 : 1 + [...devices.values()].indexOf(c[0])][c[1]]) * 256 ** k;
        }
        if (!x.write) assert.equal(result, want, `read of ${x.size} at ${x.addr}`);
      }
    }),
    { numRuns: 300 },
  );
});
