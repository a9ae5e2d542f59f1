/** Memory snapshots: full, diff, merge and restore round trips, sparseness, and every error. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GuestAddress } from '../address/address.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import { layoutPath } from './layout.js';
import { mergeSnapshots, restoreSnapshot } from './restore.js';
import { writeDiffSnapshot, writeFullSnapshot } from './write.js';

const PAGE = 4096;
const G = GuestAddress;
const dir = mkdtempSync(join(tmpdir(), 'guestmem-snapshot-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const file = (name: string) => join(dir, `${name}-${files++}`);

/** [0, 64 pages) and [64, 128 pages) adjacent, [256, 320 pages) after a hole; tracked unless told. */
function build(tracked = true, sizes = [64, 64, 64]): GuestMemory {
  const starts = [0, 64 * PAGE, 256 * PAGE];
  return GuestMemory.fromRegions(
    sizes.map((pages, i) => {
      const bytes = pages * PAGE;
      const backend = i === 1 ? sharedBackend(bytes) : heapBackend(bytes);
      return new GuestMemoryRegion(G(starts[i]), backend, tracked ? { bitmap: new AtomicBitmap(bytes) } : {});
    }),
  );
}

/** A seeded generator (xorshift32). */
function rng(seed: number): () => number {
  let s = seed | 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** Writes `count` random runs of random bytes at random places in `mem`; returns the pages touched. */
function scribble(mem: GuestMemory, next: () => number, count: number): Set<number> {
  const pages = new Set<number>();
  const regions = mem.regions();
  for (let i = 0; i < count; i++) {
    const r = regions[next() % regions.length];
    const len = 1 + (next() % 300);
    const off = next() % (r.length - len);
    const bytes = Uint8Array.from({ length: len }, () => next() & 0xff | 1);
    mem.writeSlice(G(r.start + off), bytes);
    for (let p = Math.floor((r.start + off) / PAGE); p <= Math.floor((r.start + off + len - 1) / PAGE); p++) pages.add(p);
  }
  return pages;
}

function contents(mem: GuestMemory): Uint8Array[] {
  return mem.regions().map((r) => {
    const out = new Uint8Array(r.length);
    r.readSlice(0 as never, out);
    return out;
  });
}

/** Bytes the file really occupies on disk. */
const allocated = (path: string) => statSync(path).blocks * 512;

describe('full snapshots', () => {
  it('round-trips random contents, leaving zero pages as holes, with progress to the end', () => {
    const mem = build();
    const touched = scribble(mem, rng(1), 40);
    const path = file('full');
    const progress: [number, number][] = [];
    const layout = writeFullSnapshot(mem, path, { onProgress: (done, total) => progress.push([done, total]) });
    assert.equal(statSync(path).size, mem.totalSize);
    assert.deepEqual(layout.regions, [
      { start: 0, length: 64 * PAGE, fileOffset: 0 },
      { start: 64 * PAGE, length: 64 * PAGE, fileOffset: 64 * PAGE },
      { start: 256 * PAGE, length: 64 * PAGE, fileOffset: 128 * PAGE },
    ]);
    const dataBytes = layout.data.reduce((n, [, len]) => n + len, 0);
    assert.equal(dataBytes, touched.size * PAGE, 'exactly the written pages are data');
    assert.ok(allocated(path) <= dataBytes + 2 * PAGE, `sparse: ${allocated(path)} bytes allocated for ${dataBytes} of data`);
    assert.ok(progress.length > 0);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] >= progress[i - 1][0], 'progress never goes back');
    assert.deepEqual(progress.at(-1), [mem.totalSize, mem.totalSize]);

    const target = build();
    scribble(target, rng(99), 40); // restore must also zero what the snapshot holds as zeros
    restoreSnapshot(target, path);
    assert.deepEqual(contents(target), contents(mem));
    assert.deepEqual(target.dirtyRanges(), [], 'a restored memory is the clean baseline');
  });

  it('takes the dirty pages: the full snapshot is the baseline of the next diff', () => {
    const mem = build();
    scribble(mem, rng(2), 10);
    writeFullSnapshot(mem, file('base'));
    assert.deepEqual(mem.dirtyRanges(), []);
    const diff = file('diff');
    assert.deepEqual(writeDiffSnapshot(mem, diff).data, []);
  });

  it('works on untracked memory', () => {
    const mem = build(false);
    scribble(mem, rng(3), 10);
    const path = file('untracked');
    writeFullSnapshot(mem, path);
    const target = build(false);
    restoreSnapshot(target, path);
    assert.deepEqual(contents(target), contents(mem));
  });
});

describe('diff snapshots', () => {
  it('base + N diffs after random writes restore, and merge, to the latest state', () => {
    const mem = build();
    const next = rng(4);
    scribble(mem, next, 30);
    const base = file('base');
    writeFullSnapshot(mem, base);
    const diffs: string[] = [];
    for (let i = 0; i < 5; i++) {
      const touched = scribble(mem, next, 5 + i * 3);
      const diff = file(`diff${i}`);
      const layout = writeDiffSnapshot(mem, diff);
      diffs.push(diff);
      const dirty = touched.size * PAGE;
      assert.equal(layout.data.reduce((n, [, len]) => n + len, 0), dirty, 'the diff holds exactly the pages written');
      assert.equal(statSync(diff).size, mem.totalSize, 'a diff is a full-size sparse file');
      assert.ok(allocated(diff) >= dirty && allocated(diff) <= dirty + 2 * PAGE, `${allocated(diff)} bytes on disk for ${dirty} dirty`);
      assert.deepEqual(mem.dirtyRanges(), []);
    }
    const restored = build();
    restoreSnapshot(restored, base, { diffs });
    assert.deepEqual(contents(restored), contents(mem));

    const progress: number[] = [];
    mergeSnapshots(base, { diffs, onProgress: (done) => progress.push(done) });
    assert.ok(progress.length > 0);
    const fromMerged = build();
    restoreSnapshot(fromMerged, base);
    assert.deepEqual(contents(fromMerged), contents(mem));
  });

  it('puts the taken pages back when writing fails', () => {
    const mem = build();
    scribble(mem, rng(5), 10);
    const before = mem.dirtyRanges();
    assert.throws(() => writeDiffSnapshot(mem, '/dev/full'), { code: 'ERR_SNAPSHOT_IO' });
    assert.deepEqual(mem.dirtyRanges(), before);
    assert.throws(() => writeFullSnapshot(mem, '/dev/full'), { code: 'ERR_SNAPSHOT_IO' });
    assert.deepEqual(mem.dirtyRanges(), before);
  });

  it('refuses memory with an untracked region before taking or writing anything', () => {
    const mem = GuestMemory.fromRegions([
      new GuestMemoryRegion(G(0), heapBackend(PAGE), { bitmap: new AtomicBitmap(PAGE) }),
      new GuestMemoryRegion(G(PAGE), heapBackend(PAGE)),
    ]);
    mem.writeU8(G(0), 1);
    const path = file('untracked-diff');
    assert.throws(() => writeDiffSnapshot(mem, path), { code: 'ERR_SNAPSHOT_UNTRACKED', address: PAGE, length: PAGE });
    assert.equal(existsSync(path), false);
    assert.deepEqual(mem.dirtyRanges(), [{ start: 0, length: PAGE }]);
  });
});

describe('snapshot errors leave the target untouched', () => {
  const mem = build();
  scribble(mem, rng(6), 20);
  const base = file('err-base');
  writeFullSnapshot(mem, base);
  scribble(mem, rng(7), 5);
  const diff = file('err-diff');
  writeDiffSnapshot(mem, diff);

  /** Asserts `op` throws `code` and that `target` kept its bytes. */
  function refuses(code: string, op: (target: GuestMemory) => void, target = build(), why = code): void {
    scribble(target, rng(8), 5);
    const before = contents(target);
    assert.throws(() => op(target), { code }, why);
    assert.deepEqual(contents(target), before, why);
  }

  it('a layout mismatch', () => {
    refuses('ERR_SNAPSHOT_LAYOUT_MISMATCH', (t) => restoreSnapshot(t, base), build(true, [64, 64, 32]));
    refuses('ERR_SNAPSHOT_LAYOUT_MISMATCH', (t) => restoreSnapshot(t, base), build(true, [64, 64]));
  });

  it('a truncated memory file, full or diff', () => {
    const cut = file('cut');
    writeFullSnapshot(mem, cut);
    truncateSync(cut, mem.totalSize - 1);
    refuses('ERR_SNAPSHOT_TRUNCATED', (t) => restoreSnapshot(t, cut));
    const cutDiff = file('cut-diff');
    writeFileSync(cutDiff, readFileSync(diff).subarray(0, 10));
    writeFileSync(layoutPath(cutDiff), readFileSync(layoutPath(diff)));
    refuses('ERR_SNAPSHOT_TRUNCATED', (t) => restoreSnapshot(t, base, { diffs: [diff, cutDiff] }));
    assert.throws(() => mergeSnapshots(base, { diffs: [cutDiff] }), { code: 'ERR_SNAPSHOT_TRUNCATED' });
  });

  it('a layout file that is not one, or of the wrong kind', () => {
    refuses('ERR_SNAPSHOT_INVALID', (t) => restoreSnapshot(t, diff)); // a diff where the full one goes
    refuses('ERR_SNAPSHOT_INVALID', (t) => restoreSnapshot(t, base, { diffs: [base] }));
    const layout = JSON.parse(readFileSync(layoutPath(base), 'utf8'));
    const broken: [string, unknown][] = [
      ['not json', '{'],
      ['another format', { ...layout, format: 'other' }],
      ['another version', { ...layout, version: 2 }],
      ['no regions', { ...layout, regions: [] }],
      ['a gap between regions in the file', { ...layout, regions: [layout.regions[0], { ...layout.regions[1], fileOffset: 1 }, layout.regions[2]] }],
      ['a size that is not the regions', { ...layout, size: layout.size + 1 }],
      ['a data run beyond the file', { ...layout, data: [[layout.size - 1, 2]] }],
      ['data runs out of order', { ...layout, data: [[PAGE, 1], [0, 1]] }],
      ['a data run of length 0', { ...layout, data: [[0, 0]] }],
    ];
    for (const [why, content] of broken) {
      const path = file('broken');
      writeFileSync(path, readFileSync(base));
      writeFileSync(layoutPath(path), typeof content === 'string' ? content : JSON.stringify(content));
      refuses('ERR_SNAPSHOT_INVALID', (t) => restoreSnapshot(t, path), build(), why);
    }
  });

  it('a missing file', () => {
    refuses('ERR_SNAPSHOT_IO', (t) => restoreSnapshot(t, join(dir, 'missing')));
    const noData = file('no-data');
    writeFileSync(layoutPath(noData), readFileSync(layoutPath(base)));
    refuses('ERR_SNAPSHOT_IO', (t) => restoreSnapshot(t, noData));
    assert.throws(() => writeFullSnapshot(mem, join(dir, 'no-such-dir', 'x')), { code: 'ERR_SNAPSHOT_IO' });
  });

  it('a diff of another layout in a merge', () => {
    const other = build(true, [64, 64, 32]);
    const otherDiff = file('other-diff');
    other.writeU8(G(0), 1);
    writeDiffSnapshot(other, otherDiff);
    const before = readFileSync(base);
    assert.throws(() => mergeSnapshots(base, { diffs: [diff, otherDiff] }), { code: 'ERR_SNAPSHOT_LAYOUT_MISMATCH' });
    assert.deepEqual(readFileSync(base), before, 'the base file was not written');
  });

  it('a target with a read-only region', () => {
    const target = GuestMemory.fromRegions(
      build().regions().map((r, i) => new GuestMemoryRegion(r.start, heapBackend(r.length), { readOnly: i === 2 })),
    );
    target.writeU8(G(0), 0x5a);
    const before = contents(target);
    assert.throws(() => restoreSnapshot(target, base), { code: 'ERR_INVALID_ARG', address: 256 * PAGE, length: 64 * PAGE });
    assert.deepEqual(contents(target), before);
  });

  it('a snapshot that fails part-way leaves no layout to pair with a half-written file', () => {
    const m = build();
    m.writeU8(G(0), 1);
    const path = file('overwritten');
    writeFullSnapshot(m, path);
    m.writeU8(G(0), 0);
    m.writeU8(G(320 * PAGE - 1), 2); // now only the last page holds data: the first write reaches the end
    const stop = () => {
      throw new Error('stop');
    };
    assert.throws(() => writeFullSnapshot(m, path, { onProgress: stop }), { code: 'ERR_SNAPSHOT_IO' });
    assert.equal(statSync(path).size, m.totalSize, 'the half-written file is full length');
    refuses('ERR_SNAPSHOT_IO', (t) => restoreSnapshot(t, path));
  });

  it('bad arguments', () => {
    refuses('ERR_INVALID_ARG', (t) => restoreSnapshot(t, base, { diffs: 'x' as never }));
    refuses('ERR_INVALID_ARG', (t) => restoreSnapshot(t, base, { onProgress: 1 as never }));
    assert.throws(() => writeFullSnapshot(mem, file('x'), null as never), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => mergeSnapshots(base, { diffs: [1 as never] }), { code: 'ERR_INVALID_ARG' });
  });
});
