/**
 * Every write path refuses read-only memory before a byte changes and marks nothing, through guest
 * memory (inside a read-only region and across the edge from a writable one), through the region
 * itself and through slices and refs taken from it, on heap, SharedArrayBuffer and WebAssembly
 * memory. Partial writes stop short at a read-only region. Reads work.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GuestAddress, MemoryRegionAddress } from '../address/address.js';
import type { MemoryBackend } from '../backend/backend.js';
import { heapBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import type { Bytes } from '../bytes/bytes.js';
import { VolatileMemoryError } from '../bytes/errors.js';
import { structLayout } from '../bytes/struct.js';
import { u32le, u64le } from '../bytes/values.js';
import { RegionError } from '../region/errors.js';
import { GuestMemoryRegion } from '../region/region.js';
import { inProcessBackends } from '../test-support/backends.js';
import { dirtyGuestPages } from '../test-support/bitmap.js';
import { GuestMemoryError } from './errors.js';
import { GuestMemory } from './guest-memory.js';

const PAGE = 4096;
const REGION = 4 * PAGE; // [0, 0x4000) writable, [0x4000, 0x8000) read-only
const G = GuestAddress;
const dir = mkdtempSync(join(tmpdir(), 'guestmem-ro-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'src');
writeFileSync(file, new Uint8Array(PAGE).fill(3));
let fd = -1;
function fdOf(): number {
  if (fd < 0) fd = openSync(file, 'r');
  return fd;
}
after(() => fd >= 0 && closeSync(fd));

const backends = inProcessBackends(REGION);

/** A writable region followed by a read-only one, both tracked, all bytes 0x22. */
function build(make: () => MemoryBackend): GuestMemory {
  return GuestMemory.fromRegions(
    [0, 1].map((i) => {
      const backend = make();
      backend.views().u8.fill(0x22, backend.byteOffset, backend.byteOffset + REGION);
      return new GuestMemoryRegion(G(i * REGION), backend, { length: REGION, bitmap: new AtomicBitmap(REGION), readOnly: i === 1 });
    }),
  );
}

function contents(mem: GuestMemory): Uint8Array {
  const buf = new Uint8Array(2 * REGION);
  mem.readSlice(G(0), buf);
  return buf;
}

const dirtyPages = (mem: GuestMemory) => dirtyGuestPages(mem, PAGE);

const Pair = structLayout('pair', { a: u64le, b: u32le });
type Target = Bytes<number>;

const TYPED = ['U8', 'I8', 'U16LE', 'U16BE', 'I16LE', 'I16BE', 'U32LE', 'U32BE', 'I32LE', 'I32BE', 'U64LE', 'U64BE', 'I64LE', 'I64BE', 'F32LE', 'F32BE', 'F64LE', 'F64BE'];

/** Each exact write path: name, bytes it writes, the call, whether it needs shared memory. */
const exact: [string, number, (b: Target, a: number) => void, boolean?][] = [
  ...TYPED.map((t): [string, number, (b: Target, a: number) => void] => {
    const size = Number(t.match(/\d+/)?.[0]) / 8;
    const value = t.includes('64') && !t.startsWith('F') ? 1n : 1;
    return [`write${t}`, size, (b, a) => (b as unknown as Record<string, (a: number, v: unknown) => void>)[`write${t}`](a, value)];
  }),
  ['writeSlice', 0x20, (b, a) => b.writeSlice(a, new Uint8Array(0x20).fill(1))],
  ['fill', 0x20, (b, a) => b.fill(a, 0x20, 9)],
  ['zero', 0x20, (b, a) => b.zero(a, 0x20)],
  ['writeValue', 8, (b, a) => b.writeValue(u64le, a, 7n)],
  ['writeStruct', 12, (b, a) => b.writeStruct(Pair, a, { a: 1n, b: 2 })],
  ['readExactVolatileFrom', 0x20, (b, a) => b.readExactVolatileFrom(a, fdOf(), 0x20, 0)],
  ['storeU32', 4, (b, a) => b.storeU32(a, 1), true],
  ['storeU64', 8, (b, a) => b.storeU64(a, 1n), true],
  ['compareExchangeU32 that would store', 4, (b, a) => b.compareExchangeU32(a, 0x22222222, 1), true],
  ['compareExchangeU16 that would not store', 2, (b, a) => b.compareExchangeU16(a, 0, 1), true],
];

/** Partial paths: they write what lies before a read-only region and refuse to start in one. */
const partial: [string, (b: Target, a: number) => number][] = [
  ['write', (b, a) => b.write(a, new Uint8Array(0x20).fill(1))],
  ['readVolatileFrom', (b, a) => b.readVolatileFrom(a, fdOf(), 0x20, 0)],
];

function refuses(run: () => unknown, cls: typeof GuestMemoryError | typeof VolatileMemoryError, address: number): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof cls, `a ${cls.name}`);
    assert.equal(err.code, 'ERR_READ_ONLY');
    assert.equal(err.address, address);
    return true;
  });
}

for (const [kind, make] of Object.entries(backends)) {
  describe(`read-only regions on ${kind} memory`, () => {
    for (const [name, size, run, atomic] of exact) {
      test(`${name} refuses them and changes nothing`, (t) => {
        const mem = build(make);
        if (atomic && !mem.regions()[0].v.shared) {
          t.skip(`${kind} memory is not shared: atomics refuse it with ERR_NOT_SHARED (tested elsewhere)`);
          return;
        }
        const before = contents(mem);
        const ro = mem.regions()[1];
        const inside = REGION + 0x100;
        refuses(() => run(mem as Target, inside), GuestMemoryError, inside);
        if (size > 1) refuses(() => run(mem as Target, REGION - Math.floor(size / 2)), GuestMemoryError, REGION);
        refuses(() => run(ro as Target, 0x100), VolatileMemoryError, 0x100);
        refuses(() => run(ro.getSlice(MemoryRegionAddress(0x1000), 0x100) as Target, 0x10), VolatileMemoryError, 0x10);
        refuses(() => run(mem.getSlice(G(REGION), 0x1000).subslice(0x100, 0x100) as Target, 0), VolatileMemoryError, 0);
        assert.deepEqual(contents(mem), before, 'no byte changed');
        assert.deepEqual(dirtyPages(mem), [], 'nothing marked dirty');
        run(mem as Target, 0x100); // the same call on the writable region goes through
        assert.deepEqual(dirtyPages(mem), name.includes('not store') ? [] : [0]);
      });
    }

    for (const [name, run] of partial) {
      test(`${name} stops short before a read-only region and refuses to start in one`, () => {
        const mem = build(make);
        refuses(() => run(mem as Target, REGION + 8), GuestMemoryError, REGION + 8);
        refuses(() => run(mem.regions()[1] as Target, 8), VolatileMemoryError, 8);
        refuses(() => run(mem.getSlice(G(REGION), 64) as Target, 0), VolatileMemoryError, 0);
        const before = contents(mem);
        assert.equal(run(mem as Target, REGION - 0x10), 0x10);
        const after = contents(mem);
        assert.notDeepEqual(after.subarray(REGION - 0x10, REGION), before.subarray(REGION - 0x10, REGION), 'the writable part was written');
        assert.deepEqual(after.subarray(REGION), before.subarray(REGION), 'the read-only part was not');
        assert.deepEqual(dirtyPages(mem), [REGION / PAGE - 1]);
      });
    }

    test('slices, refs and views of a read-only region refuse writes; reads work', () => {
      const mem = build(make);
      const ro = mem.getSlice(G(REGION), 0x100);
      const rw = mem.getSlice(G(0), 0x100);
      assert.equal(ro.readOnly, true);
      assert.equal(ro.subslice(8, 8).readOnly, true);
      assert.equal(rw.readOnly, false);
      refuses(() => ro.copyFrom(rw), VolatileMemoryError, 0);
      refuses(() => rw.copyTo(ro), VolatileMemoryError, 0);
      refuses(() => ro.view('write'), VolatileMemoryError, 0);
      refuses(() => ro.getRef(u32le, 4).store(1), VolatileMemoryError, 0); // offsets count from the ref
      const arr = ro.getArrayRef(u64le, 8, 4);
      refuses(() => arr.set(1, 1n), VolatileMemoryError, 8);
      refuses(() => arr.copyFrom([1n, 2n]), VolatileMemoryError, 0);
      assert.deepEqual(dirtyPages(mem), []);
      assert.equal(ro.getRef(u32le, 4).load(), 0x22222222);
      assert.deepEqual(arr.toArray(), Array(4).fill(0x2222222222222222n));
      assert.equal(ro.view('read')[0], 0x22);
      mem.fill(G(REGION - 0x100), 0x100, 0x11);
      assert.equal(mem.readU16LE(G(REGION - 1)), 0x2211, 'a value straddling both reads');
      assert.equal(rw.copyFrom(ro), 0x100, 'a read-only slice is a fine copy source');
      assert.equal(mem.readU64BE(G(0xf8)), 0x2222222222222222n, 'copied into the writable region');
    });
  });
}

/** A backend that declares its memory read-only, as a read-only file mapping does. */
function romBackend(): MemoryBackend {
  const b = heapBackend(PAGE);
  return { kind: 'rom', size: b.size, byteOffset: b.byteOffset, shared: false, readOnly: true, views: () => b.views() };
}

describe('RegionOptions.readOnly', () => {
  test('defaults to writable, or to the backend readOnly', () => {
    assert.equal(new GuestMemoryRegion(G(0), heapBackend(PAGE)).readOnly, false);
    assert.equal(new GuestMemoryRegion(G(0), heapBackend(PAGE), { readOnly: true }).readOnly, true);
    const r = new GuestMemoryRegion(G(0), romBackend());
    assert.equal(r.readOnly, true);
    assert.match(String(r), /read-only/);
  });

  test('a read-only backend refuses a writable region', () => {
    assert.throws(() => new GuestMemoryRegion(G(0x1000), romBackend(), { readOnly: false }), (err: unknown) => {
      assert.ok(err instanceof RegionError);
      assert.equal(err.code, 'ERR_REGION_READ_ONLY_BACKEND');
      assert.equal(err.address, 0x1000);
      return true;
    });
  });

  test('a readOnly that is not a boolean is refused', () => {
    assert.throws(() => new GuestMemoryRegion(G(0), heapBackend(PAGE), { readOnly: 1 as unknown as boolean }), {
      name: 'RegionError',
      code: 'ERR_INVALID_ARG',
    });
  });
});
