/**
 * Every write path marks exactly the pages it touched (vm-memory's test_bytes idea), on heap,
 * SharedArrayBuffer and WebAssembly memory, through guest memory and through slices and refs
 * taken before the write; writes straddle page and region boundaries.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { structLayout } from '../bytes/struct.js';
import { u32le, u64le } from '../bytes/values.js';
import { GuestMemoryRegion } from '../region/region.js';
import { inProcessBackends } from '../test-support/backends.js';
import { dirtyGuestPages } from '../test-support/bitmap.js';
import { GuestMemory } from './guest-memory.js';

const PAGE = 4096;
const REGION = 4 * PAGE; // two adjacent regions: [0, 0x4000) and [0x4000, 0x8000)
const G = GuestAddress;
const dir = mkdtempSync(join(tmpdir(), 'guestmem-dirty-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'src');
writeFileSync(file, new Uint8Array(2 * PAGE).fill(3));

const backends = inProcessBackends(REGION);

function build(make: () => MemoryBackend): GuestMemory {
  return GuestMemory.fromRegions(
    [0, REGION].map((start) => new GuestMemoryRegion(G(start), make(), { length: REGION, bitmap: new AtomicBitmap(REGION) })),
  );
}

const dirtyPages = (mem: GuestMemory) => dirtyGuestPages(mem, PAGE);

const Pair = structLayout('pair', { a: u64le, b: u32le });

/** Each write path, the guest range it touches, and whether it needs Atomics. */
const paths: [string, number, number, (mem: GuestMemory) => void, boolean?][] = [
  ['write', 0xff0, 0x20, (m) => assert.equal(m.write(G(0xff0), new Uint8Array(0x20).fill(1)), 0x20)],
  ['writeSlice across the region boundary', 0x3ff0, 0x20, (m) => m.writeSlice(G(0x3ff0), new Uint8Array(0x20).fill(1))],
  ['writeU8', 0x2fff, 1, (m) => m.writeU8(G(0x2fff), 1)],
  ['writeU32LE straddling a page', 0x1ffe, 4, (m) => m.writeU32LE(G(0x1ffe), 1)],
  ['writeU64BE straddling the regions', 0x3ffc, 8, (m) => m.writeU64BE(G(0x3ffc), 1n)],
  ['writeF64LE', 0x5000, 8, (m) => m.writeF64LE(G(0x5000), 1.5)],
  ['writeValue', 0x6ffc, 8, (m) => m.writeValue(u64le, G(0x6ffc), 7n)],
  ['writeStruct', 0x3ffa, 12, (m) => m.writeStruct(Pair, G(0x3ffa), { a: 1n, b: 2 })],
  ['fill', 0x1800, 0x1000, (m) => m.fill(G(0x1800), 0x1000, 9)],
  ['zero', 0x7000, 0x10, (m) => m.zero(G(0x7000), 0x10)],
  ['storeU32', 0x2000, 4, (m) => m.storeU32(G(0x2000), 1), true],
  ['compareExchangeU64 that stores', 0x4ff8, 8, (m) => m.compareExchangeU64(G(0x4ff8), 0n, 1n), true],
  ['readVolatileFrom', 0x3800, 0x1000, (m) => assert.equal(m.readVolatileFrom(G(0x3800), fdOf(), 0x1000, 0), 0x1000)],
  ['readExactVolatileFrom', 0x10, 0x10, (m) => m.readExactVolatileFrom(G(0x10), fdOf(), 0x10, 0)],
];

let fd = -1;
function fdOf(): number {
  if (fd < 0) fd = openSync(file, 'r');
  return fd;
}
after(() => fd >= 0 && closeSync(fd));

/** Pages of `[start, start + length)`. */
function pagesOf(start: number, length: number): number[] {
  const out: number[] = [];
  for (let p = Math.floor(start / PAGE); p <= Math.floor((start + length - 1) / PAGE); p++) out.push(p);
  return out;
}

for (const [kind, make] of Object.entries(backends)) {
  describe(`dirty tracking on ${kind} memory`, () => {
    for (const [name, start, length, run, atomic] of paths) {
      test(name, (t) => {
        const mem = build(make);
        if (atomic && !mem.regions()[0].v.shared) {
          t.skip(`${kind} memory is not shared: atomics refuse it (tested elsewhere)`);
          return;
        }
        const before = [...mem.getSlices(G(0), 2 * REGION)];
        assert.deepEqual(dirtyPages(mem), [], 'clean before');
        run(mem);
        const want = pagesOf(start, length);
        assert.deepEqual(dirtyPages(mem), want, 'exactly the touched pages after');
        for (let p = 0; p < (2 * REGION) / PAGE; p++) {
          const slice = before[p < REGION / PAGE ? 0 : 1];
          assert.equal(slice.bitmap.dirtyAt((p * PAGE) % REGION), want.includes(p), `slice taken before sees page ${p}`);
        }
      });
    }

    test('writes through slices and refs taken before the write mark the region bitmap', () => {
      const mem = build(make);
      const slice = mem.getSlice(G(0x1000), 0x2000);
      const ref = slice.getRef(u32le, 0x1ffc);
      const arr = mem.getSlice(G(0x4000), 0x100).getArrayRef(u64le, 0, 32);
      slice.writeU16LE(0xfff, 1); // guest 0x1fff..0x2000: two pages
      assert.deepEqual(dirtyPages(mem), [1, 2]);
      ref.store(5); // guest 0x2ffc
      arr.set(3, 1n); // guest 0x4018
      assert.deepEqual(dirtyPages(mem), [1, 2, 4]);
      assert.ok(slice.bitmap.dirtyAt(0xfff) && slice.bitmap.dirtyAt(0x1000), 'the slice sees the same bits');
      assert.ok(!mem.getSlice(G(0x3000), 0x10).bitmap.dirtyAt(0), 'a clean page reads clean through a slice');
      const target = mem.getSlice(G(0x6000), 0x1000);
      target.copyFrom(slice.subslice(0, 0x10));
      assert.deepEqual(dirtyPages(mem), [1, 2, 4, 6]);
      mem.getSlice(G(0x7000), 0x800).view('write');
      assert.deepEqual(dirtyPages(mem), [1, 2, 4, 6, 7], 'a writable view is marked before it is handed out');
      mem.getSlice(G(0x5000), 0x800).view('read');
      assert.deepEqual(dirtyPages(mem), [1, 2, 4, 6, 7], 'a read view marks nothing');
    });

    test('reads, failed writes and compareExchange that does not store mark nothing', (t) => {
      const mem = build(make);
      mem.readU64LE(G(0x3ffc));
      mem.readSlice(G(0), new Uint8Array(0x8000));
      assert.throws(() => mem.writeU32LE(G(0x10), 2 ** 32));
      assert.throws(() => mem.writeSlice(G(0x7ff0), new Uint8Array(0x20)));
      if (mem.regions()[0].v.shared) {
        mem.storeU32(G(0x100), 5);
        for (const r of mem.regions()) (r.bitmap as AtomicBitmap).resetAll();
        assert.equal(mem.compareExchangeU32(G(0x100), 4, 9), 5);
      } else {
        t.diagnostic(`${kind} memory is not shared: compareExchange not exercised here`);
      }
      assert.deepEqual(dirtyPages(mem), []);
    });
  });
}
