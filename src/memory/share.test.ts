import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { GuestAddress } from '../address/address.js';
import type { BackendDescription, MemoryBackend } from '../backend/backend.js';
import { adoptBackend, heapBackend, sharedBackend } from '../backend/buffer.js';
import { WasmMemoryBackend } from '../backend/wasm.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import type { Bitmap } from '../bitmap/bitmap.js';
import type { GuestmemError } from '../errors.js';
import { GuestMemoryRegion } from '../region/region.js';
import { type ExchangePlan, type ExchangeReport, isDirty, layoutOf } from '../test-support/share-exchange.js';
import { newWasmMemory } from '../test-support/wasm.js';
import { GuestMemory } from './guest-memory.js';
import { type GuestMemoryDescription, rebuildGuestMemory, shareGuestMemory } from './share.js';

const G = GuestAddress;
const PAGE = 4096;

function tracked(start: number, backend: MemoryBackend, options: { offset?: number; length?: number } = {}): GuestMemoryRegion {
  const length = options.length ?? backend.size - (options.offset ?? 0);
  return new GuestMemoryRegion(G(start), backend, { ...options, bitmap: new AtomicBitmap(length, { shared: true }) });
}

/** Three kinds of shared memory, two regions over one SharedArrayBuffer, a hole. */
function sharedLayout(): GuestMemory {
  const sab = new SharedArrayBuffer(8 * PAGE);
  return GuestMemory.fromRegions([
    tracked(0, sharedBackend(4 * PAGE)),
    tracked(0x4000, adoptBackend(new Uint8Array(sab, 2 * PAGE, 4 * PAGE))),
    tracked(0x10000, new WasmMemoryBackend(newWasmMemory({ initial: 1, maximum: 2, shared: true }))),
    tracked(0x30000, sharedBackend(sab), { offset: 6 * PAGE, length: 2 * PAGE }),
    new GuestMemoryRegion(G(0x40000), sharedBackend(PAGE), { readOnly: true }),
  ]);
}

async function inWorker(description: GuestMemoryDescription, plan: ExchangePlan): Promise<ExchangeReport> {
  const worker = new Worker(new URL('./test-workers/share-worker.js', import.meta.url), { workerData: { description, plan } });
  const [report] = await once(worker, 'message');
  assert.deepEqual(await once(worker, 'exit'), [0]);
  return report;
}

describe('sharing a whole guest memory with a worker', () => {
  test('both sides see each other’s writes and dirty marks, across regions and backends', async () => {
    const mem = sharedLayout();
    const mine = [0x0ffc, 0x4010, 0x10020, 0x31000];
    const theirs: [number, number][] = [
      [0x2000, 0xa1],
      [0x7ffc, 0xa2],
      [0x1f000, 0xa3],
      [0x30004, 0xa4],
    ];
    mine.forEach((a, i) => mem.writeU32LE(G(a), 0x1000 + i));
    const report = await inWorker(shareGuestMemory(mem), { read: mine, write: theirs });
    assert.deepEqual(report.layout, layoutOf(mem), 'the same layout');
    assert.deepEqual(report.seen, [0x1000, 0x1001, 0x1002, 0x1003], 'the worker sees the owner');
    assert.deepEqual(report.dirty, [true, true, true, true], 'and the owner’s dirty marks');
    for (const [a, v] of theirs) {
      assert.equal(mem.readU32LE(G(a)), v, 'the owner sees the worker');
      assert.ok(isDirty(mem, a), `the worker marked ${a.toString(16)} in the owner’s bitmap`);
    }
    assert.equal(isDirty(mem, 0x3000), false, 'pages nobody wrote stay clean');
    assert.deepEqual(report.layout.at(-1), [0x40000, PAGE, true], 'read-only stays read-only');
  });

  test('bitmaps whose words live in a backend: described with the backends, marked into by the worker', async () => {
    const words = sharedBackend(64);
    const mem = GuestMemory.fromRegions(
      [0, 0x10000].map(
        (start, i) => new GuestMemoryRegion(G(start), sharedBackend(4 * PAGE), { bitmap: AtomicBitmap.inBackend(words, 4 * PAGE, { offset: 8 * i }) }),
      ),
    );
    const d = shareGuestMemory(mem);
    assert.equal(d.backends.length, 3, 'two memories and the words, once');
    assert.deepEqual(d.regions[1].bitmap, { byteLength: 4 * PAGE, pageSize: PAGE, backend: 1, offset: 8 });
    mem.writeU32LE(G(0x10000), 1);
    const report = await inWorker(d, { read: [0x10000, 0], write: [[0x3000, 2], [0x12000, 3]] });
    assert.deepEqual(report.dirty, [true, false]);
    assert.deepEqual(
      mem.regions().map((r) => [...(r.bitmap as AtomicBitmap).dirtyRanges()]),
      [[{ offset: 0x3000, length: PAGE }], [{ offset: 0, length: PAGE }, { offset: 0x2000, length: PAGE }]],
    );
  });

  test('the description is structured-clonable and describes each backend once', () => {
    const mem = sharedLayout();
    const d = shareGuestMemory(mem);
    assert.equal(d.backends.length, 5);
    assert.deepEqual(
      d.regions.map((r) => [r.start, r.length, r.offset, r.backend]),
      [
        [0, 4 * PAGE, 0, 0],
        [0x4000, 4 * PAGE, 0, 1],
        [0x10000, 65536, 0, 2],
        [0x30000, 2 * PAGE, 6 * PAGE, 3],
        [0x40000, PAGE, 0, 4],
      ],
    );
    const one = sharedBackend(2 * PAGE);
    const twice = shareGuestMemory(
      GuestMemory.fromRegions([new GuestMemoryRegion(G(0), one, { length: PAGE }), new GuestMemoryRegion(G(0x8000), one, { offset: PAGE })]),
    );
    assert.equal(twice.backends.length, 1, 'one backend under two regions');
    const again = rebuildGuestMemory(structuredClone(twice));
    const [a, b] = again.regions();
    assert.equal(a.backend, b.backend, 'rebuilt once, for both regions');
    again.writeU8(G(0x8000), 7);
    assert.equal(one.views().u8[PAGE], 7);
    assert.equal(a.bitmap, b.bitmap, 'untracked regions rebuild untracked');
    assert.equal(a.bitmap.dirtyAt(0), false);
  });

  test('a rebuilt read-only region refuses writes; a description cannot make a read-only backend writable', () => {
    const rom = sharedBackend(PAGE);
    rom.views().u8[0] = 0xc3;
    const copy = rebuildGuestMemory(shareGuestMemory(GuestMemory.fromRegions([new GuestMemoryRegion(G(0), rom, { readOnly: true })])));
    assert.equal(copy.readU8(G(0)), 0xc3);
    assert.throws(() => copy.writeU8(G(0), 1), { name: 'GuestMemoryError', code: 'ERR_READ_ONLY', address: 0 });
    const base = sharedBackend(PAGE);
    const readOnlyBackend: MemoryBackend = { kind: 'rom', size: PAGE, byteOffset: 0, shared: true, readOnly: true, views: () => base.views(), share: () => ({ kind: 'rom' }) };
    const d = shareGuestMemory(GuestMemory.fromRegions([new GuestMemoryRegion(G(0), readOnlyBackend)]));
    assert.equal(d.regions[0].readOnly, true);
    const forged = { ...d, regions: [{ ...d.regions[0], readOnly: false }] };
    assert.throws(() => rebuildGuestMemory(forged, { resolvers: { rom: () => readOnlyBackend } }), {
      name: 'RegionError',
      code: 'ERR_REGION_READ_ONLY_BACKEND',
    });
  });

  test('a custom backend kind resolves through the resolver it names', () => {
    const sab = new SharedArrayBuffer(PAGE);
    const seen: BackendDescription[] = [];
    const custom: MemoryBackend = {
      ...sharedBackend(sab),
      kind: 'custom',
      views: () => sharedBackend(sab).views(),
      share: () => ({ kind: 'custom', id: 1 }) as BackendDescription,
    };
    const d = shareGuestMemory(GuestMemory.fromRegions([new GuestMemoryRegion(G(0x1000), custom)]));
    const mem = rebuildGuestMemory(d, {
      resolvers: {
        custom: (b) => {
          seen.push(b);
          return sharedBackend(sab);
        },
      },
    });
    assert.deepEqual(seen, [{ kind: 'custom', id: 1 }]);
    mem.writeU8(G(0x1000), 5);
    assert.equal(new Uint8Array(sab)[0], 5);
  });

  test('property: a rebuilt memory and its original are one memory, bits included', () => {
    const layout = fc.array(fc.record({ gap: fc.nat(3), pages: fc.integer({ min: 1, max: 4 }) }), { minLength: 1, maxLength: 5 });
    const writes = fc.array(fc.tuple(fc.nat(), fc.boolean(), fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 20 });
    fc.assert(
      fc.property(layout, writes, (parts, ops) => {
        let start = 0;
        const regions = parts.map(({ gap, pages }) => {
          start += gap * PAGE;
          const r = tracked(start, sharedBackend(pages * PAGE));
          start += pages * PAGE;
          return r;
        });
        const mem = GuestMemory.fromRegions(regions);
        const copy = rebuildGuestMemory(structuredClone(shareGuestMemory(mem)));
        const words = regions.flatMap((r) => Array.from({ length: r.length / 4 }, (_, i) => r.start + 4 * i));
        for (const [pick, onCopy, value] of ops) {
          const addr = words[pick % words.length];
          (onCopy ? copy : mem).writeU32LE(G(addr), value);
          assert.equal((onCopy ? mem : copy).readU32LE(G(addr)), value);
        }
        for (const addr of words.filter((_, i) => i % (PAGE / 4) === 0)) {
          assert.equal(isDirty(copy, addr), isDirty(mem, addr));
          assert.equal(isDirty(mem, addr), ops.some(([pick]) => Math.floor(words[pick % words.length] / PAGE) === addr / PAGE));
        }
      }),
      { numRuns: 50 },
    );
  });
});

describe('what cannot be shared', () => {
  const region = (backend: MemoryBackend, bitmap?: Bitmap) => new GuestMemoryRegion(G(0x2000), backend, { bitmap });
  const refuse = (mem: GuestMemory, causeCode?: string) =>
    assert.throws(
      () => shareGuestMemory(mem),
      (e: GuestmemError) => {
        assert.equal(e.name, 'GuestMemoryError');
        assert.equal(e.code, 'ERR_REGION_NOT_SHAREABLE');
        assert.match(e.message, /region \[0x2000, 0x3000\)/);
        assert.deepEqual([e.address, e.length], [0x2000, PAGE]);
        if (causeCode !== undefined) assert.equal((e.cause as GuestmemError).code, causeCode);
        return true;
      },
    );
  const withFirst = (r: GuestMemoryRegion) => GuestMemory.fromRegions([new GuestMemoryRegion(G(0), sharedBackend(PAGE)), r]);

  test('heap memory, named by its region', () => {
    refuse(withFirst(region(heapBackend(PAGE))), 'ERR_BACKEND_NOT_SHAREABLE');
  });

  test('a non-shared WebAssembly memory', () => {
    const wasm = new WasmMemoryBackend(newWasmMemory({ initial: 1 }));
    refuse(withFirst(new GuestMemoryRegion(G(0x2000), wasm, { length: PAGE })), 'ERR_BACKEND_NOT_SHAREABLE');
  });

  test('a non-shared bitmap, or a bitmap that is not an AtomicBitmap', () => {
    refuse(withFirst(region(sharedBackend(PAGE), new AtomicBitmap(PAGE))), 'ERR_BITMAP_NOT_SHARED');
    refuse(withFirst(region(sharedBackend(PAGE), new AtomicBitmap(2 * PAGE, { shared: true }).sliceAt(PAGE))));
  });

  test('a backend that cannot describe itself, or describes itself with a private buffer', () => {
    const base = sharedBackend(PAGE);
    const plain: MemoryBackend = { kind: 'plain', size: PAGE, byteOffset: 0, shared: true, views: () => base.views() };
    refuse(withFirst(region(plain)));
    const leaky: MemoryBackend = { ...plain, share: () => ({ kind: 'leaky', bytes: { inner: new Uint8Array(8) } }) as BackendDescription };
    refuse(withFirst(region(leaky)));
  });

  test('a bitmap whose words live in a backend that cannot describe itself', () => {
    const base = sharedBackend(PAGE);
    const plain: MemoryBackend = { kind: 'plain', size: PAGE, byteOffset: 0, shared: true, views: () => base.views() };
    refuse(withFirst(region(sharedBackend(PAGE), AtomicBitmap.inBackend(plain, PAGE))));
  });

  test('something that is not a guest memory', () => {
    assert.throws(() => shareGuestMemory({} as GuestMemory), { name: 'GuestMemoryError', code: 'ERR_INVALID_ARG' });
  });
});

describe('rebuilding from bad descriptions', () => {
  const good = () => shareGuestMemory(GuestMemory.fromRegions([tracked(0, sharedBackend(2 * PAGE))]));

  test('data that is not a description', () => {
    const d = good();
    const r = d.regions[0];
    const bad: unknown[] = [
      null,
      'guestmem/memory',
      { ...d, type: 'other' },
      { ...d, backends: {} },
      { ...d, regions: undefined },
      { ...d, backends: [{}] },
      { ...d, regions: [null] },
      { ...d, regions: [{ ...r, start: -1 }] },
      { ...d, regions: [{ ...r, length: 1.5 }] },
      { ...d, regions: [{ ...r, offset: 2 ** 53 }] },
      { ...d, regions: [{ ...r, backend: 1 }] },
      { ...d, regions: [{ ...r, bitmap: 7 }] },
      { ...d, regions: [{ ...r, readOnly: 'no' }] },
      { ...d, regions: [{ ...r, readOnly: undefined }] },
      { ...d, regions: [{ ...r, bitmap: { byteLength: PAGE, pageSize: PAGE, backend: 1, offset: 0 } }] },
      { ...d, regions: [{ ...r, bitmap: { byteLength: PAGE, pageSize: PAGE, backend: 0 } }] },
      // Bits for fewer bytes than the region: a write past them would land, then fail to mark.
      { ...d, regions: [{ ...r, bitmap: { ...r.bitmap, byteLength: PAGE } }] },
      { ...d, regions: [{ ...r, bitmap: { byteLength: PAGE, pageSize: PAGE, backend: 0, offset: 0 } }] },
      { ...d, regions: [{ ...r, bitmap: { ...r.bitmap, byteLength: undefined } }] },
    ];
    for (const x of bad) {
      assert.throws(() => rebuildGuestMemory(x as GuestMemoryDescription), { name: 'GuestMemoryError', code: 'ERR_DESCRIPTION_INVALID' }, JSON.stringify(x));
    }
  });

  test('a backend kind no resolver handles', () => {
    const d = good();
    assert.throws(() => rebuildGuestMemory({ ...d, backends: [{ kind: 'toString' }] }), { code: 'ERR_NO_RESOLVER', message: /'toString'/ });
    assert.throws(() => rebuildGuestMemory({ ...d, backends: [{ kind: 'mmap-chunk' }] }), { code: 'ERR_NO_RESOLVER', message: /MmapResolver/ });
  });

  test('backend and bitmap descriptions that do not hold what they should', () => {
    const d = good();
    const sab = d.backends[0] as BackendDescription & { buffer: SharedArrayBuffer };
    const backends: unknown[] = [
      { ...sab, buffer: new ArrayBuffer(2 * PAGE) },
      { ...sab, size: 3 * PAGE },
      { ...sab, byteOffset: -1 },
      { kind: 'wasm-memory', memory: newWasmMemory({ initial: 1 }) },
      { kind: 'wasm-memory' },
    ];
    for (const b of backends) {
      assert.throws(() => rebuildGuestMemory({ ...d, backends: [b as BackendDescription] }), { name: 'BackendError', code: 'ERR_INVALID_ARG' });
    }
    const bitmap = { ...d.regions[0].bitmap, words: new SharedArrayBuffer(0) } as never;
    assert.throws(() => rebuildGuestMemory({ ...d, regions: [{ ...d.regions[0], bitmap }] }), { name: 'BitmapError', code: 'ERR_BITMAP_INVALID' });
  });

  test('layouts that do not fit are refused as they would be when built directly', () => {
    const d = good();
    const r = d.regions[0];
    assert.throws(() => rebuildGuestMemory({ ...d, regions: [{ ...r, length: 3 * PAGE, bitmap: undefined }] }), { code: 'ERR_REGION_BACKEND_RANGE' });
    assert.throws(() => rebuildGuestMemory({ ...d, regions: [r, { ...r, start: PAGE }] }), { code: 'ERR_REGION_OVERLAP' });
    assert.throws(() => rebuildGuestMemory({ ...d, regions: [] }), { code: 'ERR_NO_REGIONS' });
  });
});
