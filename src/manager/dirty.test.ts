/**
 * Memory made by a MemoryManager or GuestMemoryBuilder is harvestable and diff-snapshottable as
 * a whole: its regions mark slices of their backing's bitmap, and RAM shown at several guest
 * addresses (an alias) is reported, and written to a diff, once per backing page, at its RAM
 * address.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { restoreSnapshot } from '../snapshot/restore.js';
import { writeDiffSnapshot, writeFullSnapshot } from '../snapshot/write.js';
import { pagesOf } from '../test-support/bitmap.js';
import { MemoryBacking } from './backing.js';
import { GuestMemoryBuilder } from './builder.js';
import { MemoryManager } from './manager.js';

const G = GuestAddress;
const R = (start: number, length: number) => AddressRange.fromLength(G(start), length);
const PAGE = 4096;
const MiB = 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'guestmem-manager-dirty-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** x86 RAM with the legacy split, RAM above 4 GiB and an alias map at 64 GiB, tracked. */
function x86() {
  const bitmap = new AtomicBitmap(4 * MiB);
  const built = new GuestMemoryBuilder()
    .x86LegacySupport(true)
    .dirtyBitmap(bitmap)
    .aliasMap(64 * 1024 * MiB)
    .build({ ram: [R(0, 2 * MiB), R(4096 * MiB, 2 * MiB)] });
  return { ...built, bitmap };
}

describe('dirty pages of managed memory', () => {
  test('a MemoryManager memory harvests RAM and its alias once per backing page, at the RAM address', () => {
    const bitmap = new AtomicBitmap(16 * PAGE);
    const mm = new MemoryManager();
    const backing = MemoryBacking.allocate(16 * PAGE, { bitmap });
    const ram = mm.addRam({ name: 'ram', start: G(0x100000), length: 16 * PAGE, backing });
    mm.addAlias({ name: 'ram-alias', start: G(0x800000), length: 8 * PAGE, target: ram, offset: 4 * PAGE });
    mm.addRom({ name: 'rom', start: G(0), length: PAGE, backing: MemoryBacking.allocate(PAGE) }); // untracked
    const mem = mm.memory();
    mem.writeU8(G(0x800000 + 2 * PAGE), 1); // the alias of backing page 6
    mem.writeU8(G(0x100000 + 7 * PAGE), 1); // backing page 7 through RAM
    mem.writeU8(G(0x100000 + 6 * PAGE), 2); // backing page 6 again, through RAM
    mem.writeU8(G(0x100000), 1); // backing page 0, which has no alias
    assert.deepEqual(mem.harvestDirty(), [
      { start: 0x100000, length: PAGE },
      { start: 0x100000 + 6 * PAGE, length: 2 * PAGE },
    ]);
    assert.equal(bitmap.count(), 0);
    assert.deepEqual(mem.harvestDirty(), []);
  });

  test('a GuestMemoryBuilder memory harvests every RAM range; unmapped RAM keeps its pages for later', () => {
    const { manager, ram, bitmap } = x86();
    const mem = manager.memory();
    mem.writeU8(G(0xc0000), 1); // a PAM range
    mem.writeU8(G(0x100000 + 5), 1); // RAM above 1 MiB
    mem.writeU8(G(4096 * MiB + PAGE), 1); // RAM above 4 GiB: backing 2 MiB + 1 page
    mem.writeU8(G(64 * 1024 * MiB + 0x1000), 1); // the alias map: RAM page 1
    mem.writeU8(G(0xa0000), 1); // the VGA window's RAM, about to be unmapped
    manager.unmap(ram.find((r) => r.name === 'vga') as (typeof ram)[number]);
    assert.deepEqual(manager.memory().harvestDirty(), [
      { start: 0x1000, length: PAGE },
      { start: 0xc0000, length: PAGE },
      { start: 0x100000, length: PAGE },
      { start: 4096 * MiB + PAGE, length: PAGE },
    ]);
    assert.deepEqual(pagesOf(bitmap), [0xa0], 'the unmapped page is still dirty');
  });

  test('diff snapshots of managed memory restore the same memory, aliases included', () => {
    const src = x86();
    const mem = src.manager.memory();
    mem.writeU32LE(G(0x5000), 0x11111111);
    const base = join(dir, 'vm.mem');
    writeFullSnapshot(mem, base);
    mem.writeU32LE(G(0xc1000), 0x22222222); // a PAM range
    mem.writeU32LE(G(64 * 1024 * MiB + 0x5000), 0x33333333); // the alias of RAM page 5
    mem.writeU32LE(G(4096 * MiB + 0x10000), 0x44444444); // RAM above 4 GiB
    const diff = join(dir, 'vm.mem.1');
    const layout = writeDiffSnapshot(mem, diff);
    // Three pages written once each: the alias's page is not written a second time.
    assert.equal(
      layout.data.reduce((n, [, len]) => n + len, 0),
      3 * PAGE,
    );
    assert.deepEqual(mem.harvestDirty(), [], 'the diff took the pages');
    const dst = x86();
    restoreSnapshot(dst.manager.memory(), base, { diffs: [diff] });
    const got = dst.manager.memory();
    assert.equal(got.readU32LE(G(0x5000)), 0x33333333);
    assert.equal(got.readU32LE(G(64 * 1024 * MiB + 0x5000)), 0x33333333);
    assert.equal(got.readU32LE(G(0xc1000)), 0x22222222);
    assert.equal(got.readU32LE(G(4096 * MiB + 0x10000)), 0x44444444);
  });
});
