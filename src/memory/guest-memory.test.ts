import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { adoptBackend, heapBackend, sharedBackend } from '../backend/buffer.js';
import { fsCalls } from '../bytes/fd-io.js';
import { GuestMemoryRegion } from '../region/region.js';
import { GuestMemory, GuestMemoryAtomic } from './guest-memory.js';

const G = GuestAddress;
const dir = mkdtempSync(join(tmpdir(), 'guestmem-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** [0, 0x1000) and [0x1000, 0x2000) adjacent, a hole, then [0x3000, 0x4000). */
function threeRegions(): GuestMemory {
  return GuestMemory.fromRanges([
    [G(0x3000), 0x1000],
    [G(0), 0x1000],
    [G(0x1000), 0x1000],
  ]);
}

test('building validates the layout and names the offending regions', () => {
  assert.throws(() => GuestMemory.fromRegions([]), { name: 'GuestMemoryError', code: 'ERR_NO_REGIONS' });
  assert.throws(
    () => GuestMemory.fromRanges([[G(0), 0x2000], [G(0x1000), 0x2000]]),
    (e: any) => {
      assert.equal(e.code, 'ERR_REGION_OVERLAP');
      assert.match(e.message, /\[0x0, 0x2000\) overlaps region \[0x1000, 0x3000\)/);
      assert.deepEqual([e.address, e.length], [0x1000, 0x1000]);
      return true;
    },
  );
  assert.throws(() => GuestMemory.fromRanges([[G(0), 0]]), { name: 'RegionError', code: 'ERR_REGION_EMPTY' });
  assert.throws(() => new GuestMemoryRegion(G(Number.MAX_SAFE_INTEGER - 10), heapBackend(64)), { code: 'ERR_REGION_OVERFLOW' });
  assert.throws(() => new GuestMemoryRegion(G(0), heapBackend(64), { offset: 32, length: 64 }), {
    code: 'ERR_REGION_BACKEND_RANGE',
  });
  assert.throws(() => GuestMemory.fromRegions([{} as GuestMemoryRegion]), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => GuestMemory.fromRanges([[G(-1), 1]]), { code: 'ERR_INVALID_ADDRESS' });
});

test('regions are sorted; lookups answer address -> region', () => {
  const mem = threeRegions();
  assert.deepEqual(mem.regions().map((r) => r.start), [0, 0x1000, 0x3000]);
  assert.equal(mem.numRegions, 3);
  assert.equal(mem.lastAddress(), 0x3fff);
  assert.equal(mem.totalSize, 0x3000);
  assert.equal(mem.findRegion(G(0x1800))?.start, 0x1000);
  assert.equal(mem.findRegion(G(0x2000)), undefined);
  const ra = mem.toRegionAddress(G(0x3010));
  assert.deepEqual([ra?.region.start, ra?.address], [0x3000, 0x10]);
  assert.ok(mem.addressInRange(G(0x3fff)));
  assert.ok(!mem.addressInRange(G(0x4000)));
  assert.throws(() => mem.checkAddress(G(0x2800)), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2800 });
  mem.checkRange(G(0x800), 0x1000);
  assert.throws(() => mem.checkRange(G(0x1800), 0x1000), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2000 });
  assert.ok(mem.rangeInMemory(G(0), 0x2000));
  assert.ok(!mem.rangeInMemory(G(0), 0x2001));
  assert.ok(mem.rangeInMemory(G(0x3000), 0x1000));
  assert.ok(mem.rangeInMemory(G(0x2800), 0), 'an empty range is in memory anywhere');
  assert.ok(!mem.rangeInMemory(G(0x4000), 1));
  assert.throws(() => mem.rangeInMemory(-1 as GuestAddress, 1), { code: 'ERR_INVALID_ADDRESS' });
  assert.throws(() => mem.rangeInMemory(G(0), 0.5), { code: 'ERR_INVALID_ADDRESS' });
  assert.equal(String(mem), 'GuestMemory([0x0, 0x1000), [0x1000, 0x2000), [0x3000, 0x4000))');
});

test('typed values straddle adjacent regions; holes fail with the first bad address', () => {
  const mem = threeRegions();
  mem.writeU64LE(G(0xffc), 0x1122334455667788n);
  assert.equal(mem.readU64LE(G(0xffc)), 0x1122334455667788n);
  assert.equal(mem.regions()[0].readU32LE(0xffc as never), 0x55667788);
  assert.equal(mem.regions()[1].readU32LE(0 as never), 0x11223344);
  assert.equal(mem.readU32BE(G(0xffe)), 0x66554433);
  assert.throws(() => mem.readU32LE(G(0x1ffe)), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2000, length: 4 });
  assert.throws(() => mem.writeU16LE(G(0x2fff), 1), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2fff });
  assert.throws(() => mem.readU8(G(0x4000)), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x4000 });
  assert.throws(() => mem.readU8(G(2 ** 53)), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
});

test('bulk transfers cross regions; partial ones stop at a hole, exact ones change nothing', () => {
  const mem = threeRegions();
  const src = Uint8Array.from({ length: 0x2000 }, (_, i) => i & 0xff);
  assert.equal(mem.write(G(0x800), src), 0x1800, 'stops at the hole at 0x2000');
  const back = new Uint8Array(0x1800);
  mem.readSlice(G(0x800), back);
  assert.deepEqual(back, src.subarray(0, 0x1800));
  assert.throws(() => mem.write(G(0x2000), src), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2000 });
  assert.throws(() => mem.writeSlice(G(0x3f00), src), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x4000 });
  assert.equal(mem.readU8(G(0x3f00)), 0, 'nothing written by the failed writeSlice');
  assert.throws(() => mem.fill(G(0x1f00), 0x200, 1), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2000 });
  assert.equal(mem.readU8(G(0x1f00)), 0x00, 'the failed fill left memory as it was');
  mem.zero(G(0), 0x2000);
  assert.equal(mem.read(G(0x1fff), new Uint8Array(8)), 1);
});

test('getSlice needs one region; getSlices covers a range region by region', () => {
  const mem = threeRegions();
  assert.equal(mem.getSlice(G(0x1100), 0x100).length, 0x100);
  assert.throws(() => mem.getSlice(G(0xf00), 0x200), { code: 'ERR_REGION_CROSSING', address: 0xf00, length: 0x200 });
  assert.throws(() => mem.getSlice(G(0x2000), 1), { code: 'ERR_GUEST_ADDRESS_INVALID' });
  const slices = [...mem.getSlices(G(0xf00), 0x200)];
  assert.deepEqual(slices.map((s) => s.length), [0x100, 0x100]);
  slices[1].writeU8(0, 0xab);
  assert.equal(mem.readU8(G(0x1000)), 0xab);
  assert.throws(() => [...mem.getSlices(G(0x1f00), 0x200)], { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2000 });
});

test('hot-plug builds new values; GuestMemoryAtomic swaps them for readers', () => {
  const mem = threeRegions();
  const plugged = mem.insertRegion(new GuestMemoryRegion(G(0x2000), heapBackend(0x1000)));
  assert.equal(plugged.numRegions, 4);
  assert.equal(mem.numRegions, 3, 'the old value is unchanged');
  assert.throws(() => mem.insertRegion(new GuestMemoryRegion(G(0x1800), heapBackend(0x1000))), { code: 'ERR_REGION_OVERLAP' });
  const [removed, region] = plugged.removeRegion(G(0x3000), 0x1000);
  assert.equal(region.start, 0x3000);
  assert.equal(removed.lastAddress(), 0x2fff);
  assert.throws(() => plugged.removeRegion(G(0x3000), 0x800), { code: 'ERR_REGION_NOT_FOUND', address: 0x3000 });
  const single = GuestMemory.fromRanges([[G(0), 16]]);
  assert.throws(() => single.removeRegion(G(0), 16), { code: 'ERR_NO_REGIONS' });

  const holder = new GuestMemoryAtomic(mem);
  const snapshot = holder.memory();
  holder.update((m) => m.insertRegion(new GuestMemoryRegion(G(0x2000), heapBackend(0x1000))));
  assert.equal(snapshot.numRegions, 3, 'a reader keeps its consistent snapshot');
  assert.equal(holder.memory().numRegions, 4);
  assert.throws(() => holder.update((m) => holder.update(() => m)), { code: 'ERR_UPDATE_IN_PROGRESS' });
  assert.throws(() => holder.update(() => ({}) as GuestMemory), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => holder.update((m) => m.insertRegion(new GuestMemoryRegion(G(0), heapBackend(1)))), { code: 'ERR_REGION_OVERLAP' });
  assert.equal(holder.memory().numRegions, 4, 'a failed update changes nothing');
});

test('regions over one shared buffer and adopted bytes', () => {
  const backend = sharedBackend(0x2000);
  const mem = GuestMemory.fromRegions([
    new GuestMemoryRegion(G(0x10000), backend, { offset: 0x1000, length: 0x1000 }),
    new GuestMemoryRegion(G(0), backend, { length: 0x1000 }),
  ]);
  mem.storeU32(G(0x10000), 0xcafe);
  assert.equal(new Uint32Array(backend.views().buffer)[0x400], 0xcafe);
  const bytes = new Uint8Array(64);
  const adopted = GuestMemory.fromRegions([new GuestMemoryRegion(G(0x100), adoptBackend(bytes.subarray(16, 48)))]);
  adopted.writeU8(G(0x100), 7);
  assert.equal(bytes[16], 7);
  assert.throws(() => adopted.loadU8(G(0x100)), { code: 'ERR_NOT_SHARED' });
  assert.throws(() => adoptBackend([] as unknown as Uint8Array), { name: 'BackendError', code: 'ERR_INVALID_ARG' });
  assert.throws(() => sharedBackend(new ArrayBuffer(8) as unknown as SharedArrayBuffer), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => heapBackend(2 ** 53), { code: 'ERR_INVALID_ADDRESS' });
  assert.throws(() => heapBackend(2 ** 50), { code: 'ERR_BACKEND_SIZE' });
});

test('fd transfers move bytes straight between a file and guest memory, across regions', () => {
  const mem = threeRegions();
  const file = join(dir, 'data');
  const data = Uint8Array.from({ length: 0x3000 }, (_, i) => (i * 7) & 0xff);
  writeFileSync(file, data);
  const fd = openSync(file, 'r+');
  try {
    assert.equal(mem.readVolatileFrom(G(0xf00), fd, 0x200, 0), 0x200, 'one readv across the region boundary');
    assert.equal(mem.readU8(G(0x1000)), data[0x100]);
    assert.equal(mem.readVolatileFrom(G(0x1f00), fd, 0x400, 0), 0x100, 'stops at the hole');
    mem.readExactVolatileFrom(G(0x3000), fd, 0x1000, 0x1000);
    assert.equal(mem.readU8(G(0x3fff)), data[0x1fff]);
    assert.throws(() => mem.readExactVolatileFrom(G(0x3000), fd, 0x1000, 0x2800), (e: any) => {
      assert.equal(e.code, 'ERR_PARTIAL_BUFFER');
      assert.deepEqual([e.expected, e.completed], [0x1000, 0x800]);
      return true;
    });
    assert.equal(mem.readVolatileFrom(G(0), fd, 16, 0x3000), 0, 'end of file');
    assert.throws(() => mem.readExactVolatileFrom(G(0x1f00), fd, 0x200, 0), { code: 'ERR_GUEST_ADDRESS_INVALID', address: 0x2000 });

    mem.fill(G(0x3000), 0x1000, 0x42);
    mem.writeAllVolatileTo(G(0x3000), fd, 0x1000, 0);
    assert.equal(mem.writeVolatileTo(G(0xff0), fd, 0x20, 0x1000), 0x20);
  } finally {
    closeSync(fd);
  }
  const out = readFileSync(file);
  assert.equal(out[0], 0x42);
  assert.equal(out[0xfff], 0x42);
  assert.equal(out[0x1010], mem.readU8(G(0x1000)));
  assert.throws(() => mem.readVolatileFrom(G(0), 1e9, 4), { code: 'ERR_IO' });
  assert.throws(() => mem.readVolatileFrom(G(0), -1, 4), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => mem.readVolatileFrom(G(0), 0, 4, -5), { code: 'ERR_INVALID_ARG' });
  assert.equal(mem.readVolatileFrom(G(0x2000), 0, 0), 0, 'zero bytes is no transfer at all');
});

test('fd transfers: the current position, EAGAIN on a non-blocking fd, EINTR retried', (t) => {
  const mem = GuestMemory.fromRanges([[G(0), 0x100]]);
  const file = join(dir, 'pos');
  writeFileSync(file, Uint8Array.from({ length: 8 }, (_, i) => i + 1));
  const fd = openSync(file, 'r');
  try {
    assert.equal(mem.readVolatileFrom(G(0), fd, 4), 4);
    assert.equal(mem.readVolatileFrom(G(4), fd, 4, null), 4, 'continues from the fd position');
    assert.equal(mem.readU64BE(G(0)), 0x0102030405060708n);
  } finally {
    closeSync(fd);
  }

  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const rd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const wr = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  try {
    assert.throws(() => mem.readVolatileFrom(G(0), rd, 16), (e: any) => {
      assert.equal(e.code, 'ERR_IO');
      assert.equal(e.cause.code, 'EAGAIN');
      assert.equal(e.completed, 0);
      return true;
    });
    writeFileSync(wr, Uint8Array.of(9, 9, 9));
    assert.equal(mem.readVolatileFrom(G(0), rd, 16), 3, 'a partial read returns what there was');
    assert.throws(() => mem.readExactVolatileFrom(G(0), rd, 16), (e: any) => e.code === 'ERR_IO' && e.cause.code === 'EAGAIN');
  } finally {
    closeSync(rd);
    closeSync(wr);
  }

  let calls = 0;
  const real = fsCalls.readSync;
  t.after(() => {
    fsCalls.readSync = real;
  });
  fsCalls.readSync = ((...args: Parameters<typeof real>) => {
    if (calls++ === 0) throw Object.assign(new Error('interrupted'), { code: 'EINTR' });
    return real(...args);
  }) as typeof real;
  const fd2 = openSync(file, 'r');
  try {
    assert.equal(mem.readVolatileFrom(G(0x10), fd2, 8, 0), 8);
    assert.equal(calls, 2, 'retried once after EINTR');
  } finally {
    closeSync(fd2);
  }
});
