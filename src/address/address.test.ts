import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  GuestAddress,
  MemoryRegionAddress,
  alignDown,
  alignUp,
  checkedAdd,
  checkedSub,
  isAligned,
  offsetFrom,
  rangeEnd,
} from './address.js';
import { AddressRange } from './range.js';

test('addresses are validated as non-negative safe integers', () => {
  assert.equal(GuestAddress(0x1000), 0x1000);
  assert.equal(MemoryRegionAddress(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 53, '5', 5n, null, undefined]) {
    assert.throws(() => GuestAddress(bad as number), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' }, String(bad));
  }
});

test('guest and region addresses do not mix at compile time', () => {
  const g = GuestAddress(1);
  const r = MemoryRegionAddress(1);
  // @ts-expect-error a region address is not a guest address
  const g2: GuestAddress = r;
  // @ts-expect-error nor is a plain number
  const g3: GuestAddress = 5;
  assert.equal(g2, g);
  assert.equal(g3, 5);
});

test('checked arithmetic throws ERR_GUEST_ADDRESS_OVERFLOW instead of leaving the safe range', () => {
  assert.equal(checkedAdd(GuestAddress(0x1000), 0x10), 0x1010);
  assert.equal(checkedAdd(GuestAddress(0x1000), -0x10), 0xff0);
  assert.throws(() => checkedAdd(GuestAddress(Number.MAX_SAFE_INTEGER), 1), (e: any) => {
    assert.equal(e.code, 'ERR_GUEST_ADDRESS_OVERFLOW');
    assert.equal(e.address, Number.MAX_SAFE_INTEGER);
    assert.equal(e.length, 1);
    return true;
  });
  assert.throws(() => checkedSub(GuestAddress(4), 5), { code: 'ERR_GUEST_ADDRESS_OVERFLOW' });
  assert.equal(checkedSub(GuestAddress(5), 5), 0);
  assert.throws(() => checkedAdd(GuestAddress(4), 0.5), { code: 'ERR_INVALID_ADDRESS' });
  assert.equal(offsetFrom(GuestAddress(0x1010), GuestAddress(0x1000)), 0x10);
  assert.throws(() => offsetFrom(GuestAddress(0xfff), GuestAddress(0x1000)), { code: 'ERR_GUEST_ADDRESS_OVERFLOW', address: 0xfff });
  assert.equal(rangeEnd(GuestAddress(0x1000), 0x1000), 0x2000);
  assert.throws(() => rangeEnd(GuestAddress(Number.MAX_SAFE_INTEGER - 1), 2), { code: 'ERR_GUEST_ADDRESS_OVERFLOW' });
});

test('alignment helpers are exact above 2^32 and reject non-powers of two', () => {
  const big = GuestAddress(2 ** 40 + 5);
  assert.equal(alignDown(big, 4096), 2 ** 40);
  assert.equal(alignUp(big, 4096), 2 ** 40 + 4096);
  assert.equal(alignUp(GuestAddress(8192), 4096), 8192);
  assert.ok(isAligned(2 ** 40, 4096));
  assert.ok(!isAligned(2 ** 40 + 8, 4096));
  for (const a of [0, 3, 4097, -4, 0.5]) {
    assert.throws(() => alignUp(GuestAddress(1), a), { code: 'ERR_INVALID_ALIGNMENT' }, String(a));
  }
  assert.throws(() => alignUp(GuestAddress(Number.MAX_SAFE_INTEGER), 4096), { code: 'ERR_GUEST_ADDRESS_OVERFLOW' });
});

test('ranges: contains, overlaps, intersection', () => {
  const a = new AddressRange(GuestAddress(0x1000), GuestAddress(0x2000));
  const b = AddressRange.fromLength(GuestAddress(0x1800), 0x1000);
  assert.equal(a.length, 0x1000);
  assert.ok(a.contains(GuestAddress(0x1fff)));
  assert.ok(!a.contains(GuestAddress(0x2000)));
  assert.ok(a.overlaps(b));
  assert.deepEqual([a.intersection(b)?.start, a.intersection(b)?.end], [0x1800, 0x2000]);
  const c = new AddressRange(GuestAddress(0x2000), GuestAddress(0x3000));
  assert.ok(!a.overlaps(c));
  assert.equal(a.intersection(c), undefined);
  assert.ok(a.containsRange(new AddressRange(GuestAddress(0x1100), GuestAddress(0x1200))));
  assert.ok(!new AddressRange(GuestAddress(5), GuestAddress(5)).overlaps(a));
  assert.equal(a.toString(), '[0x1000, 0x2000)');
  assert.throws(() => new AddressRange(GuestAddress(2), GuestAddress(1)), { code: 'ERR_GUEST_ADDRESS_OVERFLOW' });
  assert.throws(() => AddressRange.fromLength(GuestAddress(Number.MAX_SAFE_INTEGER), 1), { code: 'ERR_GUEST_ADDRESS_OVERFLOW' });
});
