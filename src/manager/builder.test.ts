import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { pagesOf } from '../test-support/bitmap.js';
import { MemoryBacking } from './backing.js';
import { GuestMemoryBuilder, X86_LEGACY_SPLIT } from './builder.js';

const G = GuestAddress;
const MIB = 2 ** 20;
const R = (start: number, length: number) => AddressRange.fromLength(G(start), length);

test('RAM ranges lie one after another in one backing; MMIO gaps stay empty', () => {
  const built = new GuestMemoryBuilder().build({ ram: [R(0, 0x10000), R(0x40000, 0x8000)], mmio: [R(0x20000, 0x10000)] });
  assert.equal(built.backing.size, 0x18000);
  assert.deepEqual(built.ram.map((r) => [r.name, r.start, r.length, r.backingOffset, r.priority]), [
    ['ram-0', 0, 0x10000, 0, 255],
    ['ram-1', 0x40000, 0x8000, 0x10000, 255],
  ]);
  assert.deepEqual(built.manager.flatView().map((s) => [s.start, s.end, s.backingOffset]), [
    [0, 0x10000, 0],
    [0x40000, 0x48000, 0x10000],
  ]);
  assert.equal(built.aliases.length, 0);
  assert.equal(built.manager.read(G(0x20000), 4), 0xffffffff);
  assert.equal(built.backing.chunks[0].kind, 'heap');
  assert.equal(new GuestMemoryBuilder().allocator('shared').build({ ram: [R(0, 4096)] }).backing.chunks[0].kind, 'shared');
});

test('x86 legacy support splits low RAM exactly as the reference does', () => {
  const { ram, manager } = new GuestMemoryBuilder()
    .x86LegacySupport(true)
    .build({ ram: [R(0, 2 * MIB), R(2 ** 32, MIB)], mmio: [R(0xc000_0000, 0x4000_0000)] });
  const expected: [string, number, number][] = [
    ['ram-low', 0, 0xa0000],
    ['vga', 0xa0000, 0xc0000],
    ...[0xc0000, 0xc4000, 0xc8000, 0xcc000, 0xd0000, 0xd4000, 0xd8000, 0xdc000, 0xe0000, 0xe4000, 0xe8000, 0xec000].map(
      (s): [string, number, number] => [`pam-${s.toString(16)}`, s, s + 0x4000],
    ),
    ['pam-f0000', 0xf0000, 0x100000],
    ['ram-0', 0x100000, 2 * MIB],
    ['ram-1', 2 ** 32, 2 ** 32 + MIB],
  ];
  assert.deepEqual(ram.map((r) => [r.name, r.start, r.end]), expected);
  // Consecutive in the backing, each its own controllable region.
  let offset = 0;
  for (const r of ram) {
    assert.equal(r.backingOffset, offset);
    offset += r.length;
  }
  for (const [, start, end] of expected.slice(1, -2)) {
    manager.setVisibility(new AddressRange(G(start), G(end)), 'read-only');
  }
  assert.equal(manager.flatView().filter((s) => s.access === 'read-only').length, 14);
  assert.deepEqual(X86_LEGACY_SPLIT, [0, ...expected.slice(1, 16).map(([, s]) => s)]);
  // Exactly 1 MiB: nothing above the split, and no empty region for it.
  const exact = new GuestMemoryBuilder().x86LegacySupport(true).build({ ram: [R(0, MIB), R(MIB * 4, 4096)] });
  assert.deepEqual(exact.ram.map((r) => r.name).slice(-2), ['pam-f0000', 'ram-1']);
  assert.equal(exact.ram.length, 16);
});

test('x86 legacy support needs RAM from 0 covering 1 MiB', () => {
  for (const ram of [[R(0x1000, 2 * MIB)], [R(0, MIB - 4096)]]) {
    assert.throws(() => new GuestMemoryBuilder().x86LegacySupport(true).build({ ram }), (e: any) => {
      assert.equal(e.code, 'ERR_LEGACY_RAM_LAYOUT');
      assert.deepEqual([e.address, e.length], [ram[0].start, ram[0].length]);
      return true;
    });
  }
});

test('the alias map mirrors all RAM above the layout and follows RAM visibility', () => {
  const built = new GuestMemoryBuilder()
    .x86LegacySupport(true)
    .aliasMap(2 ** 40)
    .build({ ram: [R(0, 2 * MIB)], mmio: [R(0xfec0_0000, 0x10_0000)] });
  assert.equal(built.aliasMapOffset, 2 ** 40);
  assert.equal(built.aliases.length, built.ram.length);
  for (const [i, a] of built.aliases.entries()) {
    assert.deepEqual([a.kind, a.target, a.start, a.length], ['alias', built.ram[i], 2 ** 40 + built.ram[i].start, built.ram[i].length]);
  }
  const mm = built.manager;
  mm.write(G(0xb8000), 4, 0x12345678);
  assert.equal(mm.read(G(2 ** 40 + 0xb8000), 4), 0x12345678);
  mm.unmap(built.ram[1]); // the VGA window goes from both places
  assert.equal(mm.read(G(2 ** 40 + 0xb8000), 4), 0xffffffff);
  assert.equal(mm.read(G(0xb8000), 4), 0xffffffff);
  // Exactly at the end of the layout fits; below it does not; nor past 2^53.
  new GuestMemoryBuilder().aliasMap(0xfed0_0000).build({ ram: [R(0, MIB)], mmio: [R(0xfec0_0000, 0x10_0000)] });
  assert.throws(() => new GuestMemoryBuilder().aliasMap(0xfecf_ffff).build({ ram: [R(0, MIB)], mmio: [R(0xfec0_0000, 0x10_0000)] }), {
    code: 'ERR_ALIAS_MAP_WONT_FIT',
    address: 0xfecf_ffff,
    length: 0xfed0_0000,
  });
  assert.throws(() => new GuestMemoryBuilder().aliasMap(Number.MAX_SAFE_INTEGER - 10).build({ ram: [R(0, MIB)] }), { code: 'ERR_ALIAS_MAP_WONT_FIT' });
  assert.throws(() => new GuestMemoryBuilder().aliasMap(-1), { code: 'ERR_INVALID_ARG' });
});

test('an existing backing rebuilds the same memory', () => {
  const layout = { ram: [R(0, 0x10000), R(0x100000, 0x10000)] };
  const first = new GuestMemoryBuilder().allocator('shared').build(layout);
  first.manager.write(G(0x100010), 4, 0xfeedface);
  const again = new GuestMemoryBuilder().existingBacking(first.backing).build(layout);
  assert.equal(again.backing, first.backing);
  assert.equal(again.manager.read(G(0x100010), 4), 0xfeedface);
  // A worker would rebuild it from the SharedArrayBuffers: the same bytes again.
  const buffers = first.backing.chunks.map((c) => c.views().buffer as SharedArrayBuffer);
  const rebuilt = new GuestMemoryBuilder().existingBacking(new MemoryBacking(buffers.map((b) => sharedBackend(b)))).build(layout);
  assert.equal(rebuilt.manager.memory().readU32LE(G(0x100010)), 0xfeedface);
  assert.throws(() => new GuestMemoryBuilder().existingBacking(first.backing).build({ ram: [R(0, 0x20001)] }), {
    code: 'ERR_RAM_TOO_LARGE',
    length: 0x20001,
    expected: 0x20000,
  });
  assert.throws(() => new GuestMemoryBuilder().existingBacking({} as never), { code: 'ERR_INVALID_ARG' });
});

test('an allocator gets the size with prefetch and pin, and its backing is checked', () => {
  const asked: unknown[] = [];
  const built = new GuestMemoryBuilder()
    .prefetchRam(true)
    .pinMappings(true)
    .allocator((size, options) => {
      asked.push([size, { ...options }]);
      return [0, 1, 2, 3].map(() => heapBackend(size / 4));
    })
    .build({ ram: [R(0, 0x2000), R(0x10000, 0x2000)] });
  assert.deepEqual(asked, [[0x4000, { prefetch: true, pin: true, hugePageSize: undefined }]]);
  assert.equal(built.pinMappings, true);
  // The first RAM range spans two chunks: two guest memory regions, values cross between them.
  assert.equal(built.manager.memory().numRegions, 4);
  built.manager.memory().writeU32LE(G(0xffe), 0xa1b2c3d4);
  assert.equal(built.manager.read(G(0xffe), 4), 0xa1b2c3d4);
  assert.equal(built.backing.chunks[1].views().u8[0], 0xb2);
  assert.throws(() => new GuestMemoryBuilder().allocator(() => heapBackend(100)).build({ ram: [R(0, 101)] }), { code: 'ERR_RAM_TOO_LARGE' });
  const failing = new GuestMemoryBuilder().allocator(() => {
    throw new Error('no memory today');
  });
  assert.throws(() => failing.build({ ram: [R(0, 4096)] }), (e: any) => e.code === 'ERR_ALLOCATION_FAILED' && e.cause.message === 'no memory today');
  assert.throws(() => new GuestMemoryBuilder().allocator('mmap' as never), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => new GuestMemoryBuilder().unmapped('loud' as never), { code: 'ERR_INVALID_ARG' });
  const strict = new GuestMemoryBuilder().unmapped('error').build({ ram: [R(0, 4096)] });
  assert.throws(() => strict.manager.read(G(4096), 1), { code: 'ERR_UNMAPPED_ACCESS' });
  assert.throws(() => new GuestMemoryBuilder().allocator(() => [] as never).build({ ram: [R(0, 1)] }), { code: 'ERR_INVALID_ARG' });
});

test('heap RAM above the 4 GiB of one buffer is ERR_RAM_TOO_LARGE, before allocating', () => {
  assert.throws(() => MemoryBacking.allocate(2 ** 32 + 1), { code: 'ERR_RAM_TOO_LARGE', length: 2 ** 32 + 1, expected: 2 ** 32 });
  const layout = { ram: [R(0, 3 * 2 ** 30), R(2 ** 32, 2 ** 30 + 1)] };
  assert.throws(() => new GuestMemoryBuilder().allocator('shared').build(layout), { code: 'ERR_RAM_TOO_LARGE', length: 2 ** 32 + 1 });
});

test('layouts that are empty, unsorted or overlapping are refused', () => {
  const bad = [
    { ram: [] },
    { ram: [R(0, 0)] },
    { ram: [R(0x2000, 0x1000), R(0, 0x1000)] },
    { ram: [R(0, 0x2000), R(0x1000, 0x1000)] },
    { ram: [R(0, 0x2000)], mmio: [R(0x1fff, 0x10)] },
    { ram: [R(0, 0x2000)], mmio: [R(0x4000, 0)] },
    { ram: [[0, 0x1000]] as never },
    undefined as never,
    { ram: 5 as never },
    { ram: [R(0, 0x1000)], mmio: {} as never },
  ];
  for (const layout of bad) assert.throws(() => new GuestMemoryBuilder().build(layout), { code: 'ERR_INVALID_LAYOUT' });
});

test('over mmap memory: prefetch and pin reach the mapping, spans split at 4 GiB chunks', async (t) => {
  let mmap: typeof import('../mmap/index.js');
  type Mmap = ReturnType<typeof mmap.MmapBackend.memfd>;
  try {
    mmap = await import('../mmap/index.js');
  } catch (e) {
    t.skip(`guestmem/mmap is unavailable here: ${(e as Error).message}`);
    return;
  }
  const { MmapBackend } = mmap;
  const made: Mmap[] = [];
  const built = new GuestMemoryBuilder()
    .prefetchRam(true)
    .allocator((size, o) => {
      const b = MmapBackend.memfd(size, { populate: o.prefetch, pin: o.pin });
      made.push(b);
      return b.chunks();
    })
    .build({ ram: [R(0, 4 * MIB)] });
  const { smapsAt } = await import('../mmap/test-support/proc.js');
  assert.ok((smapsAt(made[0].address)?.fields.get('Rss') ?? 0) >= 4 * MIB, 'populated');
  built.manager.write(G(0x1000), 4, 7);
  made[0].close();

  // 6 GiB of sparse anonymous memory: [3 GiB, 4 GiB) PCI hole, RAM above 4 GiB crosses chunks.
  using big = MmapBackend.anonymous(6 * 2 ** 30);
  const { manager } = new GuestMemoryBuilder()
    .existingBacking(new MemoryBacking(big.chunks()))
    .build({ ram: [R(0, 3 * 2 ** 30), R(2 ** 32, 3 * 2 ** 30)], mmio: [R(3 * 2 ** 30, 2 ** 30)] });
  assert.deepEqual(manager.memory().regions().map((r) => [r.start, r.length]), [
    [0, 3 * 2 ** 30],
    [2 ** 32, 2 ** 30],
    [2 ** 32 + 2 ** 30, 2 * 2 ** 30],
  ]);
  manager.write(G(2 ** 32 + 2 ** 30 - 2), 4, 0x11223344);
  assert.equal(manager.memory().readU32LE(G(2 ** 32 + 2 ** 30 - 2)), 0x11223344);
  assert.equal(big.chunks()[1].views().u8[0], 0x22);
});

test('the manager does not import guestmem/mmap', () => {
  const dir = new URL('./', import.meta.url);
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.js') && !f.endsWith('.test.js'))) {
    assert.doesNotMatch(readFileSync(new URL(f, dir), 'utf8'), /mmap\//, f);
  }
});

test('a dirty bitmap over the backing sees every write path, at backing offsets', () => {
  const bitmap = new AtomicBitmap(0x20000);
  const built = new GuestMemoryBuilder()
    .dirtyBitmap(bitmap)
    .aliasMap(0x100000)
    .build({ ram: [R(0, 0x10000), R(0x40000, 0x10000)] });
  const mm = built.manager;
  mm.write(G(0x1000), 4, 1); // page 1
  mm.memory().writeU8(G(0x40000 + 0x3000), 1); // second range: backing page 0x13
  mm.write(G(0x100000 + 0x5000), 2, 1); // through the alias of the first range: page 5
  assert.throws(() => mm.memory().writeSlice(G(0xfffe), new Uint8Array(4)), { code: 'ERR_GUEST_ADDRESS_INVALID' }); // runs into the hole: nothing written
  assert.deepEqual(pagesOf(bitmap), [1, 5, 0x13]);
  assert.equal(built.backing.bitmap, bitmap);
  assert.throws(() => new MemoryBacking(heapBackend(16), { bitmap: {} as never }), { code: 'ERR_INVALID_ARG' });
  // Bits for less than the backing: a write past them would land and then fail to mark.
  const short = new GuestMemoryBuilder().dirtyBitmap(new AtomicBitmap(0x1000));
  assert.throws(() => short.build({ ram: [R(0, 0x2000)] }), { name: 'MemoryManagerError', code: 'ERR_INVALID_ARG', length: 0x1000, expected: 0x2000 });
  assert.throws(() => new MemoryBacking([heapBackend(0x1000), heapBackend(16)], { bitmap: new AtomicBitmap(0x1000) }), { code: 'ERR_INVALID_ARG' });
});

test('every way of building memory keeps the dirty bitmap', () => {
  const layout = { ram: [R(0, 0x4000)] };
  const write = (built: ReturnType<GuestMemoryBuilder['build']>) => {
    built.manager.write(G(0x2000), 4, 1);
    built.manager.memory().writeU8(G(0x3fff), 1);
  };
  const ways: [string, (b: GuestMemoryBuilder) => GuestMemoryBuilder][] = [
    ['heap', (b) => b],
    ['shared', (b) => b.allocator('shared')],
    ['an allocator of backends', (b) => b.allocator((size) => heapBackend(size))],
    ['an allocator of a backing', (b) => b.allocator((size) => MemoryBacking.allocate(size))],
    ['an existing backing', (b) => b.existingBacking(MemoryBacking.allocate(0x4000))],
  ];
  for (const [why, way] of ways) {
    const bitmap = new AtomicBitmap(0x4000);
    const built = way(new GuestMemoryBuilder().dirtyBitmap(bitmap)).build(layout);
    write(built);
    assert.deepEqual(pagesOf(bitmap), [2, 3], why);
    assert.equal(built.backing.bitmap, bitmap, why);
  }
  // A backing that already tracks into this bitmap is used as it is; into another one, refused.
  const bitmap = new AtomicBitmap(0x4000);
  const tracked = MemoryBacking.allocate(0x4000, { bitmap });
  assert.equal(new GuestMemoryBuilder().dirtyBitmap(bitmap).existingBacking(tracked).build(layout).backing, tracked);
  const other = new GuestMemoryBuilder().dirtyBitmap(new AtomicBitmap(0x4000));
  assert.throws(() => other.existingBacking(tracked).build(layout), { name: 'MemoryManagerError', code: 'ERR_INVALID_ARG' });
  assert.throws(() => other.existingBacking(undefined).allocator(() => tracked).build(layout), { code: 'ERR_INVALID_ARG' });
});

test('huge pages: the allocator is asked for them, RAM lies on them', () => {
  const asked: unknown[] = [];
  const allocator = (size: number, o: { hugePageSize: number | undefined }) => {
    asked.push([size, o.hugePageSize]);
    return heapBackend(size);
  };
  const built = new GuestMemoryBuilder()
    .hugePages(2 * MIB)
    .allocator(allocator)
    .build({ ram: [R(0, 4 * MIB), R(2 ** 32, 2 * MIB)], mmio: [R(0xc000_0000, MIB)] });
  assert.deepEqual(asked, [[6 * MIB, 2 * MIB]]);
  assert.equal(built.backing.size, 6 * MIB);
  new GuestMemoryBuilder().hugePages(2 * MIB).hugePages(undefined).allocator(allocator).build({ ram: [R(0, 4096)] });
  assert.deepEqual(asked.at(-1), [4096, undefined], 'normal pages again');
});

test('huge pages: a bad size, RAM off huge page boundaries, or a backing without them are build errors, before allocating', () => {
  let allocated = 0;
  const builder = () =>
    new GuestMemoryBuilder().allocator((size) => {
      allocated++;
      return heapBackend(size);
    });
  const ram = { ram: [R(0, 4 * MIB)] };
  for (const size of [3 * MIB, 2048, 1, 2 ** 31]) {
    assert.throws(() => builder().hugePages(size).build(ram), { name: 'MemoryManagerError', code: 'ERR_HUGE_PAGE_SIZE', length: size }, String(size));
  }
  const unaligned: [string, { ram: AddressRange<GuestAddress>[] }, Record<string, number>][] = [
    ['RAM of 3 MiB in all', { ram: [R(0, 3 * MIB)] }, { length: 3 * MIB, expected: 2 * MIB }],
    ['a range starting at 1 MiB', { ram: [R(MIB, 2 * MIB)] }, { address: MIB, length: 2 * MIB, expected: 2 * MIB }],
    ['a range of 1 MiB (4 MiB in all)', { ram: [R(0, MIB), R(4 * MIB, 3 * MIB)] }, { address: 0, length: MIB, expected: 2 * MIB }],
  ];
  for (const [why, layout, props] of unaligned) {
    assert.throws(() => builder().hugePages(2 * MIB).build(layout), { code: 'ERR_HUGE_PAGE_ALIGNMENT', ...props }, why);
  }
  const unsupported: [string, GuestMemoryBuilder][] = [
    ['an existing backing', builder().existingBacking(MemoryBacking.allocate(4 * MIB))],
    ['heap RAM', new GuestMemoryBuilder()],
    ['shared RAM', new GuestMemoryBuilder().allocator('shared')],
    ['x86 legacy support', builder().x86LegacySupport(true)],
  ];
  for (const [why, b] of unsupported) {
    assert.throws(() => b.hugePages(2 * MIB).build(ram), { code: 'ERR_HUGE_PAGES_UNSUPPORTED' }, why);
  }
  assert.equal(allocated, 0, 'nothing was allocated');
  for (const size of [-1, 1.5, 0, '2M']) {
    assert.throws(() => new GuestMemoryBuilder().hugePages(size as never), { code: 'ERR_INVALID_ARG' }, String(size));
  }
});

test('huge pages over mmap memory: hugetlbfs pages, or transparent huge pages', async (t) => {
  let mmap: typeof import('../mmap/index.js');
  try {
    mmap = await import('../mmap/index.js');
  } catch (e) {
    t.skip(`guestmem/mmap is unavailable here: ${(e as Error).message}`);
    return;
  }
  const { MmapBackend, MmapError } = mmap;
  const { meminfo, smapsAt } = await import('../mmap/test-support/proc.js');
  const made: ReturnType<typeof MmapBackend.memfd>[] = [];
  const huge = meminfo('Hugepagesize');
  const layout = { ram: [R(0, 2 * huge)] };
  // Transparent huge pages: the mapping is advised for them (MADV_HUGEPAGE) wherever THP exists.
  const thp = new GuestMemoryBuilder()
    .hugePages(huge)
    .allocator((size, o) => {
      const b = MmapBackend.anonymous(size, { hugepages: o.hugePageSize === undefined ? undefined : 'thp' });
      made.push(b);
      return b.chunks();
    })
    .build(layout);
  thp.manager.write(G(huge), 4, 0x5a5a5a5a);
  assert.ok(smapsAt(made[0].address)?.flags.includes('hg'), 'VmFlags hg (MADV_HUGEPAGE)');
  made[0].close();
  // hugetlbfs: the memfd's pages are huge pages, if the machine reserved enough of them.
  const hugetlb = new GuestMemoryBuilder()
    .hugePages(huge)
    .allocator((size, o) => {
      const b = MmapBackend.memfd(size, { hugepages: o.hugePageSize === undefined ? undefined : 'hugetlb' });
      made.push(b);
      return b.chunks();
    });
  if (meminfo('HugePages_Free') < 2) {
    assert.throws(() => hugetlb.build(layout), (e: any) => e.code === 'ERR_ALLOCATION_FAILED' && e.cause instanceof MmapError && e.cause.errno === 'ENOMEM');
    t.skip(`only the ENOMEM path of hugetlbfs: this machine has ${meminfo('HugePages_Free')} free huge pages (vm.nr_hugepages)`);
    return;
  }
  const built = hugetlb.build(layout);
  built.manager.write(G(huge), 4, 0x5a5a5a5a);
  const b = made[1];
  assert.equal(b.pageSize, huge);
  assert.equal(smapsAt(b.address)?.fields.get('KernelPageSize'), huge);
  b.close();
});
