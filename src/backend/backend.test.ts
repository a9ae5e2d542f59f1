import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { newWasmMemory } from '../test-support/wasm.js';
import { heapBackend, sharedBackend } from './buffer.js';
import { BackingViews, MAX_VIEW_BYTES } from './views.js';
import { WasmMemoryBackend } from './wasm.js';

const PAGE = 65536;

test('a WebAssembly memory that grows keeps serving regions and slices taken before the grow', () => {
  const memory = newWasmMemory({ initial: 1, maximum: 4 });
  const backend = new WasmMemoryBackend(memory);
  assert.equal(backend.kind, 'wasm');
  assert.equal(backend.shared, false);
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0x1000), backend, { length: PAGE })]);
  const slice = mem.getSlice(GuestAddress(0x1000), 64);
  mem.writeU32LE(GuestAddress(0x1010), 0x12345678);
  const before = memory.buffer;
  memory.grow(1);
  assert.equal(before.byteLength, 0, 'the old buffer is detached');
  assert.equal(backend.size, 2 * PAGE);
  assert.equal(mem.readU32LE(GuestAddress(0x1010)), 0x12345678, 'the region took fresh views');
  assert.equal(slice.readU32LE(0x10), 0x12345678, 'so did the slice');
  slice.writeU8(0, 9);
  assert.equal(new Uint8Array(memory.buffer)[0], 9, 'writes land in the live buffer');
  const buf = new Uint8Array(4);
  memory.grow(1);
  assert.equal(mem.read(GuestAddress(0x1010), buf), 4);
  assert.deepEqual([...buf], [0x78, 0x56, 0x34, 0x12]);
  // A region can cover memory that only exists after growing.
  const grown = new GuestMemoryRegion(GuestAddress(0), backend, { offset: 3 * PAGE - 16, length: 16 });
  grown.writeU64LE(0 as never, 1n);
  assert.equal(grown.readU64LE(0 as never), 1n);
});

test('a shared WebAssembly memory supports atomics', () => {
  const memory = newWasmMemory({ initial: 1, maximum: 2, shared: true });
  const backend = new WasmMemoryBackend(memory);
  assert.equal(backend.shared, true);
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(GuestAddress(0), backend)]);
  mem.storeU32(GuestAddress(8), 41);
  assert.equal(mem.compareExchangeU32(GuestAddress(8), 41, 42), 41);
  memory.grow(1);
  assert.equal(mem.loadU32(GuestAddress(8)), 42);
});

test('backends say whether they can be shared', () => {
  assert.equal(heapBackend(16).shared, false);
  assert.equal(heapBackend(16).kind, 'heap');
  const s = sharedBackend(16);
  assert.equal(s.shared, true);
  assert.equal(sharedBackend(s.views().buffer as SharedArrayBuffer).views().buffer, s.views().buffer);
});

test('one set of views covers at most 4 GiB', () => {
  assert.equal(MAX_VIEW_BYTES, 2 ** 32);
  const fake = { byteLength: 2 ** 32 + 8 } as ArrayBuffer;
  assert.throws(() => new BackingViews(fake), { name: 'BackendError', code: 'ERR_BACKEND_SIZE' });
});
