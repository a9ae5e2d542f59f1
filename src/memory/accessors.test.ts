import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { sharedBackend } from '../backend/buffer.js';
import type { Bytes } from '../bytes/bytes.js';
import { u16le, u32le } from '../bytes/values.js';
import { structLayout } from '../bytes/struct.js';
import { GuestMemoryRegion } from '../region/region.js';
import { VolatileSlice } from '../volatile/slice.js';
import { GuestMemory } from './guest-memory.js';

const G = GuestAddress;

/** [0, 0x1000) and [0x1000, 0x2000) adjacent, a hole, then [0x3000, 0x4000); shared memory. */
function layout(): GuestMemory {
  return GuestMemory.fromRanges([[G(0), 0x1000], [G(0x1000), 0x1000], [G(0x3000), 0x1000]], { shared: true });
}

test('a partial read or write of guest memory runs on into an adjacent region and fails where no byte can move', () => {
  const mem = layout();
  assert.equal(mem.write(G(0xffe), new Uint8Array(4).fill(1)), 4, 'from the end of a region into the next');
  assert.equal(mem.read(G(0x1000), new Uint8Array(0x2000)), 0x1000, 'stops at the hole');
  for (const at of [0x2000, 0x4000]) {
    assert.throws(() => mem.read(G(at), new Uint8Array(4)), { name: 'GuestMemoryError', code: 'ERR_GUEST_ADDRESS_INVALID', address: at, length: 4 });
    assert.throws(() => mem.write(G(at), new Uint8Array(4)), { code: 'ERR_GUEST_ADDRESS_INVALID', address: at, length: 4 });
    assert.equal(mem.read(G(at), new Uint8Array(0)), 0, 'an empty buffer anywhere');
  }
});

test('a bigint given to an 8- to 32-bit write, store, compareExchange or fill is ERR_VALUE_OUT_OF_RANGE and writes nothing', () => {
  const mem = layout();
  const region = new GuestMemoryRegion(G(0), sharedBackend(0x100));
  const slice = new VolatileSlice(new Uint8Array(new SharedArrayBuffer(0x100)));
  const Pair = structLayout('pair', { a: u16le, b: u32le });
  // Each at an address 0x10 and, for guest memory, at one that straddles two regions.
  const calls: [string, (m: Bytes<number>, at: number) => unknown][] = [
    ...['writeU8', 'writeI8', 'writeU16LE', 'writeU16BE', 'writeI16LE', 'writeI16BE', 'writeU32LE', 'writeU32BE', 'writeI32LE', 'writeI32BE'].map(
      (name): [string, (m: Bytes<number>, at: number) => unknown] => [name, (m, at) => (m as unknown as Record<string, (a: number, v: bigint) => void>)[name](at, 1n)],
    ),
    ['writeValue u16le', (m, at) => m.writeValue(u16le, at, 1n as unknown as number)],
    ['writeStruct', (m, at) => m.writeStruct(Pair, at, { a: 1, b: 1n as unknown as number })],
    ['fill', (m, at) => m.fill(at, 4, 1n as unknown as number)],
    ['storeU8', (m) => m.storeU8(0x10, 1n as unknown as number)],
    ['storeU16', (m) => m.storeU16(0x10, 1n as unknown as number)],
    ['storeU32', (m) => m.storeU32(0x10, 1n as unknown as number)],
    ['compareExchangeU8', (m) => m.compareExchangeU8(0x10, 0, 1n as unknown as number)],
    ['compareExchangeU16', (m) => m.compareExchangeU16(0x10, 0n as unknown as number, 1)],
    ['compareExchangeU32', (m) => m.compareExchangeU32(0x10, 0, 1n as unknown as number)],
  ];
  const targets: [string, Bytes<number>, number[]][] = [
    ['guest memory', mem as unknown as Bytes<number>, [0x10, 0xffe]],
    ['region', region as unknown as Bytes<number>, [0x10]],
    ['slice', slice, [0x10]],
  ];
  for (const [kind, m, addresses] of targets) {
    for (const at of addresses) {
      for (const [name, call] of calls) {
        assert.throws(() => call(m, at), { name: 'VolatileMemoryError', code: 'ERR_VALUE_OUT_OF_RANGE' }, `${kind}: ${name} at ${at}`);
      }
      assert.equal(m.readU64LE(at), 0n, `${kind}: nothing written at ${at}`);
    }
  }
  assert.throws(() => slice.writeU32LE(0, Symbol('x') as unknown as number), { code: 'ERR_VALUE_OUT_OF_RANGE' }, 'a symbol too');
});

test('getSlice of no bytes needs an address that is memory, as in vm-memory (ERR_GUEST_ADDRESS_INVALID in a hole)', () => {
  const mem = layout();
  for (const at of [0x2000, 0x2800, 0x4000]) {
    assert.throws(() => mem.getSlice(G(at), 0), { name: 'GuestMemoryError', code: 'ERR_GUEST_ADDRESS_INVALID', address: at, length: 0 });
  }
  assert.equal(mem.getSlice(G(0x3fff), 0).length, 0, 'an empty slice at the last byte');
  assert.equal(mem.getSlice(G(0x1000), 0).length, 0, 'where one region ends and the next begins');
  assert.throws(() => mem.getSlice(-1 as GuestAddress, 0), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
});
