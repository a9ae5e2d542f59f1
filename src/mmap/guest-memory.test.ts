import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { MmapBackend } from './backend.js';

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
