/** Memory snapshots: full, diff, merge and restore round trips, sparseness, and every error. */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import fs, { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, describe, it, mock } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GuestAddress } from '../address/address.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryRegion } from '../region/region.js';
import type { SnapshotError } from './errors.js';
import { layoutPath, MAX_LAYOUT_BYTES, writeLayout } from './layout.js';
import { mergeSnapshots, restoreSnapshot } from './restore.js';
import { writeDiffSnapshot, writeFullSnapshot } from './write.js';

const PAGE = 4096;
const execFileAsync = promisify(execFile);
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

/** Fresh memory of the usual layout with the snapshot at `path` (and `diffs`) restored into it. */
function restored(path: string, diffs: string[] = []): GuestMemory {
  const mem = build();
  restoreSnapshot(mem, path, { diffs });
  return mem;
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
    const stop = () => {
      throw new Error('stop');
    };
    assert.throws(() => writeDiffSnapshot(mem, file('stopped-diff'), { onProgress: stop }), { code: 'ERR_SNAPSHOT_IO' });
    assert.deepEqual(mem.dirtyRanges(), before);
    assert.throws(() => writeFullSnapshot(mem, file('stopped-full'), { onProgress: stop }), { code: 'ERR_SNAPSHOT_IO' });
    assert.deepEqual(mem.dirtyRanges(), before);
  });

  it('refuses to replace anything but a regular file, before taking or writing anything', () => {
    const mem = build();
    scribble(mem, rng(9), 10);
    const before = mem.dirtyRanges();
    const target = file('link-target');
    writeFileSync(target, 'keep');
    const link = file('link');
    symlinkSync(target, link);
    const layoutDir = file('layout-dir');
    mkdirSync(layoutPath(layoutDir));
    for (const [path, why] of [['/dev/full', 'a device'], [dir, 'a directory'], [link, 'a symbolic link'], [layoutDir, 'a directory as layout']]) {
      assert.throws(() => writeDiffSnapshot(mem, path), { name: 'SnapshotError', code: 'ERR_SNAPSHOT_NOT_A_FILE' }, why);
      assert.throws(() => writeFullSnapshot(mem, path), { name: 'SnapshotError', code: 'ERR_SNAPSHOT_NOT_A_FILE' }, why);
    }
    assert.deepEqual(mem.dirtyRanges(), before);
    assert.ok(statSync('/dev/full').isCharacterDevice());
    assert.equal(readFileSync(target, 'utf8'), 'keep');
    assert.equal(existsSync(layoutDir), false);
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

  it('a layout file larger than MAX_LAYOUT_BYTES, before reading it', () => {
    const big = file('big-layout');
    writeFileSync(big, readFileSync(base));
    writeFileSync(layoutPath(big), '');
    truncateSync(layoutPath(big), MAX_LAYOUT_BYTES + 1); // sparse: nothing is allocated
    refuses('ERR_SNAPSHOT_LAYOUT_TOO_BIG', (t) => restoreSnapshot(t, big));
    assert.throws(() => restoreSnapshot(build(), big), { length: MAX_LAYOUT_BYTES + 1, expected: MAX_LAYOUT_BYTES });
    assert.throws(() => mergeSnapshots(base, { diffs: [big] }), { code: 'ERR_SNAPSHOT_LAYOUT_TOO_BIG' });
  });

  it('a layout that is a symbolic link to a regular file is followed', () => {
    const linked = file('linked');
    writeFileSync(linked, readFileSync(base));
    symlinkSync(layoutPath(base), layoutPath(linked));
    const target = build();
    restoreSnapshot(target, linked);
    assert.deepEqual(contents(target), contents(restored(base)));
  });

  it('bad arguments', () => {
    refuses('ERR_INVALID_ARG', (t) => restoreSnapshot(t, base, { diffs: 'x' as never }));
    refuses('ERR_INVALID_ARG', (t) => restoreSnapshot(t, base, { onProgress: 1 as never }));
    assert.throws(() => writeFullSnapshot(mem, file('x'), null as never), { code: 'ERR_INVALID_ARG' });
    assert.throws(() => mergeSnapshots(base, { diffs: [1 as never] }), { code: 'ERR_INVALID_ARG' });
  });
});

describe('a snapshot that fails at any step leaves the previous one restorable', () => {
  /** The file system calls of writing a snapshot: each is made to fail in turn. */
  const CALLS = ['lstatSync', 'openSync', 'writeSync', 'ftruncateSync', 'fsyncSync', 'closeSync', 'renameSync'] as const;

  /**
   * Runs `op` with the `k`-th call (from 1) of {@link CALLS} failing with EIO, and returns how
   * many such calls `op` made and what it threw.
   */
  function failingAt(k: number, op: () => void): { calls: number; error: unknown } {
    let calls = 0;
    for (const name of CALLS) {
      const real = fs[name] as (...args: unknown[]) => unknown;
      mock.method(fs, name, (...args: unknown[]) => {
        if (++calls === k) throw Object.assign(new Error(`${name} failed (injected)`), { code: 'EIO' });
        return real.apply(fs, args);
      });
    }
    syncBuiltinESMExports();
    try {
      op();
      return { calls, error: undefined };
    } catch (error) {
      return { calls, error };
    } finally {
      mock.restoreAll();
      syncBuiltinESMExports();
    }
  }

  /** Files beside `path` that a snapshot of it made and did not remove. */
  const leftovers = (path: string) => readdirSync(dir).filter((f) => f.startsWith(`${basename(path)}.`) && /\.(tmp|old)$/.test(f));

  it('a layout rewritten alone (as a merge does) is the old file or the new one at every step, and the old one after a failure', () => {
    const mem = build();
    scribble(mem, rng(30), 10);
    const path = file('layout-alone');
    const first = writeFullSnapshot(mem, path);
    const target = layoutPath(path);
    const old = readFileSync(target, 'utf8');
    const next = { ...first, data: [] };
    // Every rename leaves a layout file in place: a reader never finds none.
    const real = fs.renameSync;
    const missing: string[] = [];
    mock.method(fs, 'renameSync', (from: string, to: string) => {
      real(from, to);
      if (!existsSync(target)) missing.push(`${basename(from)} -> ${basename(to)}`);
    });
    syncBuiltinESMExports();
    try {
      writeLayout(path, next);
    } finally {
      mock.restoreAll();
      syncBuiltinESMExports();
    }
    assert.deepEqual(missing, [], 'renames after which the layout was missing');
    const written = readFileSync(target, 'utf8');
    assert.notEqual(written, old);
    writeLayout(path, first);
    let failed = 0;
    for (let k = 1; ; k++) {
      const { calls, error } = failingAt(k, () => writeLayout(path, next));
      if (error === undefined) {
        assert.ok(k > calls);
        break;
      }
      failed++;
      assert.equal((error as SnapshotError).code, 'ERR_SNAPSHOT_IO', `call ${k}: ${(error as Error).message}`);
      assert.equal(readFileSync(target, 'utf8'), old, `call ${k}: the old layout is in place`);
      assert.deepEqual(leftovers(target), [], `call ${k}: nothing left beside it`);
    }
    assert.ok(failed >= 6, `${failed} steps failed in turn`);
    assert.equal(readFileSync(target, 'utf8'), written);
  });

  for (const kind of ['full', 'diff'] as const) {
    it(`a ${kind} snapshot over an older one`, () => {
      const write = kind === 'full' ? writeFullSnapshot : writeDiffSnapshot;
      const mem = build();
      scribble(mem, rng(20), 20);
      const base = file(`steps-${kind}-base`);
      writeFullSnapshot(mem, base);
      scribble(mem, rng(21), 10);
      const path = kind === 'full' ? base : file(`steps-${kind}`);
      if (kind === 'diff') write(mem, path);
      const diffs = kind === 'diff' ? [path] : [];
      const old = contents(mem);
      scribble(mem, rng(22), 10);
      const dirty = mem.dirtyRanges();
      let failed = 0;
      for (let k = 1; ; k++) {
        const { calls, error } = failingAt(k, () => write(mem, path));
        if (error === undefined) {
          assert.ok(k > calls, `the snapshot succeeded although call ${k} of ${calls} failed`);
          break;
        }
        failed++;
        assert.equal((error as SnapshotError).code, 'ERR_SNAPSHOT_IO', `call ${k}: ${(error as Error).message}`);
        assert.deepEqual(mem.dirtyRanges(), dirty, `call ${k}: the taken pages are back`);
        assert.deepEqual(contents(restored(base, diffs)), old, `call ${k}: the previous snapshot restores`);
        assert.deepEqual(leftovers(path), [], `call ${k}: no new file is left beside the old ones`);
      }
      // lstat x2, open, ftruncate, fsync, close, then the layout's open, write, fsync, close, the
      // four renames and the directory's open, fsync and close.
      assert.ok(failed >= 17, `${failed} steps failed in turn`);
      assert.deepEqual(contents(restored(base, diffs)), contents(mem), 'the snapshot that went through restores the new state');
      assert.deepEqual(leftovers(path), []);
    });
  }
});

describe('hostile files are refused before memory changes, without blocking', () => {
  const child = fileURLToPath(new URL('./test-support/restore-child.js', import.meta.url));
  const mem = GuestMemory.fromRegions([new GuestMemoryRegion(G(0), heapBackend(PAGE), { bitmap: new AtomicBitmap(PAGE) })]);
  const base = file('hostile-base');
  writeFullSnapshot(mem, base); // all zeros: restoring it changes every byte of the child's memory
  mem.writeU8(G(7), 7);
  const diff = file('hostile-diff');
  writeDiffSnapshot(mem, diff);

  /**
   * Runs a restore (into a page of 0xa5 bytes) or a merge in a child process, killed after 20 s:
   * a build that blocks on a FIFO fails this test rather than hanging the suite.
   */
  async function inChild(op: 'restore' | 'merge', path: string, diffs: string[] = []): Promise<{ code: string | null; unchanged: boolean }> {
    try {
      const { stdout } = await execFileAsync(process.execPath, [child, JSON.stringify({ op, path, diffs })], { timeout: 20_000 });
      return JSON.parse(stdout);
    } catch (err) {
      assert.fail((err as { killed?: boolean }).killed ? `${op} of ${path} blocked: killed after 20 s` : String(err));
    }
  }

  /** A snapshot at a new path whose memory file (`'memory'`) or layout (`'layout'`) is made by `make`, the other copied from `from`. */
  function hostile(from: string, which: 'memory' | 'layout', make: (path: string) => void): string {
    const path = file(`hostile-${which}`);
    if (which === 'memory') {
      make(path);
      copyFileSync(layoutPath(from), layoutPath(path));
    } else {
      copyFileSync(from, path);
      make(layoutPath(path));
    }
    return path;
  }
  const fifo = (path: string) => execFileSync('mkfifo', [path]);
  const noMkfifo = spawnSync('mkfifo', ['--version']).error;

  const cases: [string, () => ['restore' | 'merge', string, string[]]][] = [
    ['a FIFO as memory file', () => ['restore', hostile(base, 'memory', fifo), []]],
    ['a FIFO as layout', () => ['restore', hostile(base, 'layout', fifo), []]],
    ['a FIFO as diff file', () => ['restore', base, [hostile(diff, 'memory', fifo)]]],
    ['a FIFO as diff layout', () => ['restore', base, [hostile(diff, 'layout', fifo)]]],
    ['a layout that is a symbolic link to /dev/zero', () => ['restore', hostile(base, 'layout', (p) => symlinkSync('/dev/zero', p)), []]],
    ['a directory as memory file', () => ['restore', hostile(base, 'memory', mkdirSync), []]],
    ['a directory as diff file', () => ['restore', base, [hostile(diff, 'memory', mkdirSync)]]],
    ['a FIFO as diff file of a merge', () => ['merge', base, [hostile(diff, 'memory', fifo)]]],
    ['a FIFO as layout of a merge', () => ['merge', hostile(base, 'layout', fifo), [diff]]],
    ['a directory as base of a merge', () => ['merge', hostile(base, 'memory', mkdirSync), [diff]]],
  ];
  for (const [why, make] of cases) {
    it(why, async (t) => {
      if (why.includes('FIFO') && noMkfifo !== undefined) {
        t.skip(`mkfifo cannot be run here: ${noMkfifo.message}`);
        return;
      }
      const [op, path, diffs] = make();
      const baseBytes = readFileSync(base);
      const { code, unchanged } = await inChild(op, path, diffs);
      assert.equal(code, 'ERR_SNAPSHOT_NOT_A_FILE');
      if (op === 'restore') assert.ok(unchanged, 'memory kept its bytes');
      else assert.deepEqual(readFileSync(base), baseBytes, 'the base file was not written');
    });
  }
});
