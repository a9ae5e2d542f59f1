import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { MmapBackend } from '../mmap/backend.js';
import { VhostUserError } from './errors.js';
import { VhostUserLog } from './log.js';
import { DEFAULT_MAX_MEMORY, type MemoryRegionDescription, VhostUserMemoryTable } from './memory.js';
import { closeFd } from './sys.js';
import { unsealedMemfd, UVA_BASE } from './test-support/frontend.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-memory-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** Region `i` of a table of equal regions laid end to end in guest and user addresses. */
function region(i: number, size: number): MemoryRegionDescription {
  return { guestAddress: i * size, size, userAddress: UVA_BASE + BigInt(i * size), mmapOffset: 0 };
}

/** Bytes V8 counts as held outside its heap: every wrapped chunk adds its size (4 GiB). */
function external(): number {
  return process.memoryUsage().external;
}

/** Lines of /proc/self/maps that map memfds named `name`. */
function mappingsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`/memfd:${name} `)).length;
}

function rejects(fn: () => unknown, code: string, extra: Record<string, unknown> = {}): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof VhostUserError, String(e));
    assert.equal(e.code, code, e.message);
    for (const [k, v] of Object.entries(extra)) assert.equal((e as unknown as Record<string, unknown>)[k], v, k);
    return true;
  });
}

describe('a huge sparse memory table', () => {
  // First in this file: nothing else has wrapped chunks whose collection could blur `external`.
  test('1 TiB in 8 memfds maps without wrapping a chunk; a chunk is wrapped when first touched', (t) => {
    const size = 2 ** 37; // 8 x 128 GiB = 1 TiB, the default limit
    const ram = Array.from({ length: 8 }, () => MmapBackend.memfd(size, { name: 'sparse-tib' }));
    try {
      const before = external();
      const t0 = performance.now();
      using table = VhostUserMemoryTable.map(
        ram.map((_, i) => region(i, size)),
        ram.map((r) => r.fd as number),
        new VhostUserLog(),
      );
      const ms = performance.now() - t0;
      t.diagnostic(`mapping 1 TiB (8 x 128 GiB memfds, 256 chunks) took ${ms.toFixed(1)} ms`);
      assert.equal(table.memory.numRegions, 256);
      assert.ok(external() - before < 2 ** 32, `no chunk was wrapped: external grew by ${external() - before}`);

      const gpa = GuestAddress(5 * size + 3 * 2 ** 32 + 12345); // chunk 3 of region 5
      const touched = external();
      table.memory.writeU32LE(gpa, 0xdeadbeef);
      const grew = external() - touched;
      // Within 16 MiB of 4 GiB: other small external buffers come and go meanwhile.
      assert.ok(Math.abs(grew - 2 ** 32) < 2 ** 24, `one 4 GiB chunk was wrapped: external grew by ${grew}`);
      assert.equal(table.memory.readU32LE(gpa), 0xdeadbeef);
      // The front-end's own mapping of the memfd sees the write.
      const chunk = ram[5].chunks()[3];
      assert.equal(new DataView(chunk.views().buffer).getUint32(12345, true), 0xdeadbeef);
    } finally {
      for (const r of ram) r.close();
    }
  });

  test('8 memfds of 1 TiB each (8 TiB) pass the default limit: refused before anything is mapped', () => {
    const size = 2 ** 40;
    const ram = Array.from({ length: 8 }, () => MmapBackend.memfd(size, { name: 'sparse-8tib' }));
    try {
      const mapped = mappingsOf('sparse-8tib');
      rejects(
        () => VhostUserMemoryTable.map(ram.map((_, i) => region(i, size)), ram.map((r) => r.fd as number), new VhostUserLog()),
        'ERR_VHOST_USER_MEM_TABLE',
        { length: 8 * size, expected: DEFAULT_MAX_MEMORY },
      );
      assert.equal(mappingsOf('sparse-8tib'), mapped, 'nothing was mapped');
      // Raised, the limit lets them in.
      using table = VhostUserMemoryTable.map(
        ram.map((_, i) => region(i, size)),
        ram.map((r) => r.fd as number),
        new VhostUserLog(),
        { maxBytes: 8 * size },
      );
      assert.equal(table.memory.numRegions, 8 * 256);
    } finally {
      for (const r of ram) r.close();
    }
  });

  test('maxBytes bounds ADD_MEM_REG too, and the table is unchanged after a refusal', () => {
    using ram = MmapBackend.memfd(4 * MiB, { name: 'limit' });
    const fd = ram.fd as number;
    const log = new VhostUserLog();
    using table = VhostUserMemoryTable.map([region(0, 2 * MiB)], [fd], log, { maxBytes: 3 * MiB });
    rejects(() => table.add({ ...region(1, 2 * MiB), mmapOffset: 2 * MiB }, fd, log, { maxBytes: 3 * MiB }), 'ERR_VHOST_USER_MEM_TABLE', {
      length: 4 * MiB,
      expected: 3 * MiB,
    });
    assert.equal(table.regions.length, 1);
    const bigger = table.add({ ...region(1, 2 * MiB), mmapOffset: 2 * MiB }, fd, log, { maxBytes: 4 * MiB });
    assert.equal(bigger.regions.length, 2);
    bigger.close();
  });
});

describe('seals', () => {
  test('an fd that can shrink is refused with ERR_VHOST_USER_UNSEALED, before any region is mapped', () => {
    using sealed = MmapBackend.memfd(2 * MiB, { name: 'sealed-ram' });
    const unsealed = unsealedMemfd(2 * MiB);
    const file = join(dir, 'ram');
    writeFileSync(file, new Uint8Array(2 * MiB));
    using regular = MmapBackend.file({ path: file, size: 2 * MiB });
    try {
      const mapped = mappingsOf('sealed-ram');
      for (const fd of [unsealed, regular.fd as number]) {
        rejects(
          () => VhostUserMemoryTable.map([region(0, 2 * MiB), region(1, 2 * MiB)], [sealed.fd as number, fd], new VhostUserLog()),
          'ERR_VHOST_USER_UNSEALED',
          { address: 2 * MiB, length: 2 * MiB },
        );
      }
      assert.equal(mappingsOf('sealed-ram'), mapped, 'the sealed region was not mapped either');
      // A trusted front-end's unsealed memory is mapped when asked for.
      using table = VhostUserMemoryTable.map([region(0, 2 * MiB)], [unsealed], new VhostUserLog(), { allowUnsealed: true });
      table.memory.writeU8(GuestAddress(7), 7);
      assert.equal(table.memory.readU8(GuestAddress(7)), 7);
    } finally {
      closeFd(unsealed);
    }
  });
});
