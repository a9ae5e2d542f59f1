/**
 * Dirty-page tracking and snapshots: a tracked guest of two regions takes a full snapshot, runs
 * on, and takes a diff snapshot of just the pages it wrote since; a fresh guest is then restored
 * from the full snapshot plus the diff and compared byte for byte.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AtomicBitmap,
  GuestAddress,
  GuestMemory,
  GuestMemoryRegion,
  heapBackend,
  restoreSnapshot,
  writeDiffSnapshot,
  writeFullSnapshot,
} from 'guestmem';

const G = GuestAddress;
const MIB = 1 << 20;
const PAGE = 4096;

/** 16 MiB of RAM at 0 and 16 MiB at 4 GiB, each region with its own dirty bitmap. */
function guest(): GuestMemory {
  return GuestMemory.fromRegions(
    [0, 4 * 1024 * MIB].map((start) => new GuestMemoryRegion(G(start), heapBackend(16 * MIB), { bitmap: new AtomicBitmap(16 * MIB) })),
  );
}

const dir = mkdtempSync(join(tmpdir(), 'guestmem-example-'));
try {
  const mem = guest();
  console.log(`guest memory: ${mem}`);
  mem.writeSlice(G(0x10_0000), new Uint8Array(MIB).fill(0xaa)); // a "kernel" at 1 MiB
  mem.writeU64LE(G(4 * 1024 * MIB + 0x2000), 0xfeedn);
  console.log(`dirty after boot: ${ranges(mem.dirtyRanges())}`);

  const full = join(dir, 'mem.full');
  writeFullSnapshot(mem, full);
  console.log(`full snapshot: ${statSync(full).size / MIB} MiB file, ${statSync(full).blocks * 512 / 1024} KiB on disk (zero pages are holes)`);
  console.log(`dirty after the full snapshot: ${ranges(mem.dirtyRanges())}`);

  mem.writeU32LE(G(0x10_0ffe), 0x12345678); // straddles two pages
  mem.fill(G(4 * 1024 * MIB + 0x8000), 3 * PAGE, 0x55);
  console.log(`written since: ${ranges(mem.dirtyRanges())}`);
  const diff = join(dir, 'mem.diff');
  const layout = writeDiffSnapshot(mem, diff);
  console.log(`diff snapshot: ${layout.data.length} runs, ${statSync(diff).blocks * 512 / 1024} KiB on disk`);

  const restored = guest();
  restoreSnapshot(restored, full, { diffs: [diff] });
  const same = mem.regions().every((r, i) => Buffer.from(r.asVolatileSlice().view('read')).equals(restored.regions()[i].asVolatileSlice().view('read')));
  if (!same) throw new Error('the restored guest differs from the original');
  console.log('restored full + diff into a fresh guest: identical');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function ranges(rs: readonly { start: number; length: number }[]): string {
  if (rs.length === 0) return 'none';
  return rs.map((r) => `[0x${r.start.toString(16)}, +${r.length / PAGE} pages)`).join(' ');
}
