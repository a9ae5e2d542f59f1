import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { MmapBackend, PAGE_SIZE } from './backend.js';

const G = GuestAddress;

test('guest memory over a 6 GiB sparse mapping: one region per chunk, values across the 4 GiB line', () => {
  using backend = MmapBackend.anonymous(6 * 2 ** 30);
  const mem = GuestMemory.fromRegions(backend.chunks().map((c) => new GuestMemoryRegion(G(c.offset), c)));
  assert.equal(mem.numRegions, 2);
  mem.writeU32LE(G(2 ** 32 - 16), 7); // aligned, at the top of a full 4 GiB view
  mem.writeU64LE(G(2 ** 32 - 4), 0x1122334455667788n); // straddles the two chunks
  mem.writeU32LE(G(6 * 2 ** 30 - 4), 9);
  assert.equal(mem.readU32LE(G(2 ** 32 - 16)), 7);
  assert.equal(mem.readU64LE(G(2 ** 32 - 4)), 0x1122334455667788n);
  assert.equal(mem.readU32LE(G(2 ** 32)), 0x11223344);
  assert.equal(mem.readU32LE(G(6 * 2 ** 30 - 4)), 9);
});

test('after close, every access through guest memory throws ERR_BACKEND_CLOSED', () => {
  const backend = MmapBackend.memfd(1 << 20);
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0x100000), backend)]);
  const slice = mem.getSlice(G(0x100000), 64);
  const raw = slice.view('read');
  mem.writeU32LE(G(0x100000), 1);
  backend.close();
  assert.equal(raw.length, 0, 'raw views handed out earlier no longer reach the memory');
  assert.throws(() => mem.readU32LE(G(0x100000)), { code: 'ERR_BACKEND_CLOSED' });
  assert.throws(() => mem.writeSlice(G(0x100000), new Uint8Array(8)), { code: 'ERR_BACKEND_CLOSED' });
  assert.throws(() => slice.readU8(0), { code: 'ERR_BACKEND_CLOSED' });
});

test('a region over a read-only file mapping is read-only, and cannot be made writable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-rom-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'rom');
  writeFileSync(path, new Uint8Array(PAGE_SIZE).fill(0xc3));
  using backend = MmapBackend.file({ path, size: PAGE_SIZE, readOnly: true });
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0xf0000), backend)]);
  assert.equal(mem.regions()[0].readOnly, true);
  assert.equal(mem.readU32LE(G(0xf0000)), 0xc3c3c3c3);
  assert.throws(() => mem.writeU32LE(G(0xf0000), 1), { name: 'GuestMemoryError', code: 'ERR_READ_ONLY', address: 0xf0000 });
  assert.throws(() => mem.readExactVolatileFrom(G(0xf0000), 0, 16), { code: 'ERR_READ_ONLY' });
  assert.equal(mem.readU32LE(G(0xf0000)), 0xc3c3c3c3);
  assert.throws(() => new GuestMemoryRegion(G(0), backend.chunks()[0], { readOnly: false }), {
    name: 'RegionError',
    code: 'ERR_REGION_READ_ONLY_BACKEND',
  });
});
