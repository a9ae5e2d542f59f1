/**
 * Writing memory snapshots: full (every byte, zero pages left as holes) and diff (the pages
 * dirtied since the previous snapshot), in Firecracker's memory-file format with a layout file
 * beside it (see ./layout.ts).
 *
 * Snapshot a paused guest: pages that change while a snapshot is written are caught by the next
 * diff (their dirty bits are set again), but the snapshot itself is then not a consistent state.
 */
import { closeSync, fsyncSync, ftruncateSync, openSync } from 'node:fs';
import { type GuestAddress, MemoryRegionAddress } from '../address/address.js';
import { atomicBitmapTarget } from '../bitmap/atomic-bitmap.js';
import { NO_BITMAP } from '../bitmap/bitmap.js';
import type { GuestDirtyRange, GuestMemory } from '../memory/guest-memory.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { SnapshotError } from './errors.js';
import { besidePath, checkReplaceable, ioError, removeQuietly, replaceFiles, uniqueTag, writeNewFile } from './files.js';
import { layoutBytes, layoutPath, regionsOf, type SnapshotLayout } from './layout.js';

/** Called as a snapshot proceeds: `done` of `total` bytes handled. */
export type ProgressCallback = (done: number, total: number) => void;

/** Options of {@link writeFullSnapshot} and {@link writeDiffSnapshot}. */
export interface WriteSnapshotOptions {
  /** Told about progress after every run of bytes written (at most 16 MiB apart). */
  onProgress?: ProgressCallback | undefined;
}

/** Progress is reported at least this often (bytes); runs are written in pieces of this size. */
export const PROGRESS_STEP = 16 * 1024 * 1024;

/** Granularity of the zero-page scan of a full snapshot: holes are whole pages of zeros. */
const SCAN_PAGE = 4096;

/**
 * Writes all of `mem` to `path` (regions in guest-address order, back to back) and its layout
 * to `path.json`. Zero pages are not written: the file is sparse there, as Firecracker's are.
 *
 * The new files are written beside the old ones (`<name>.<tag>.tmp`), fsynced, and renamed into
 * place only when complete, the layout last; the directory is fsynced after. A snapshot that
 * fails at any step leaves the one that was at `path` before intact and restorable. `path` and `path.json`, where they exist, must be
 * regular files (they are replaced, not written through).
 *
 * The full snapshot is the baseline of the next diff: the dirty pages of every tracked region are
 * taken before the copy starts (pages written meanwhile stay dirty). If the snapshot fails they are
 * put back, so no dirty page is lost.
 *
 * @returns The layout written.
 * @throws {SnapshotError} `ERR_SNAPSHOT_NOT_A_FILE` (checked before anything is taken or
 * written), `ERR_SNAPSHOT_IO` (with the system error as `cause`), `ERR_SNAPSHOT_LAYOUT_TOO_BIG`,
 * `ERR_INVALID_ARG`.
 */
export function writeFullSnapshot(mem: GuestMemory, path: string, options: WriteSnapshotOptions = {}): SnapshotLayout {
  const onProgress = validateOptions(options);
  return writeSnapshot(mem, path, 'full', () => mem.regions().flatMap((r) => nonZeroRuns(r).map(([at, n]) => [r, at, n] as Run)), onProgress);
}

/**
 * Writes the pages of `mem` dirtied since the last snapshot or harvest to `path`, each at its
 * offset in a full-size sparse file (Firecracker's diff format), and the layout, which lists the
 * runs written, to `path.json`. The dirty pages are taken (harvested) first; if the snapshot
 * fails they are put back and the snapshot that was at `path` stays, as for a full snapshot.
 *
 * Memory whose regions mark slices of one bitmap (a `MemoryManager`'s) is taken as
 * `GuestMemory.harvestDirty` does: a page that shows at several guest addresses is written once,
 * at the lowest.
 *
 * @returns The layout written.
 * @throws {SnapshotError} `ERR_SNAPSHOT_UNTRACKED` naming a region without an `AtomicBitmap`
 * or a slice of one (its changes would be missed), `ERR_SNAPSHOT_NOT_A_FILE` (both checked
 * before anything is taken or written), `ERR_SNAPSHOT_IO`, `ERR_SNAPSHOT_LAYOUT_TOO_BIG`,
 * `ERR_INVALID_ARG`.
 */
export function writeDiffSnapshot(mem: GuestMemory, path: string, options: WriteSnapshotOptions = {}): SnapshotLayout {
  const onProgress = validateOptions(options);
  for (const r of mem.regions()) {
    if (atomicBitmapTarget(r.bitmap) === undefined) {
      throw new SnapshotError('ERR_SNAPSHOT_UNTRACKED', `region ${r.range} tracks no dirty pages: a diff snapshot would miss its changes`, {
        address: r.start,
        length: r.length,
      });
    }
  }
  return writeSnapshot(mem, path, 'diff', (taken) => regionRuns(mem, taken), onProgress);
}

/** Dirty guest ranges taken from the tracked regions. */
type Taken = GuestDirtyRange[];
/** Bytes to write: a region, an offset in it and a length. */
type Run = [GuestMemoryRegion, number, number];

/** The guest ranges (all memory) as region runs, in order. */
function regionRuns(mem: GuestMemory, ranges: Taken): Run[] {
  const runs: Run[] = [];
  for (const { start, length } of ranges) {
    for (let done = 0; done < length; ) {
      const r = mem.findRegion((start + done) as GuestAddress) as GuestMemoryRegion;
      const at = start + done - r.start;
      const n = Math.min(length - done, r.length - at);
      runs.push([r, at, n]);
      done += n;
    }
  }
  return runs;
}

/**
 * The common part: check the targets, open a new file beside `path`, take the dirty pages, write
 * the runs `choose` picks (region, offset in it, length), size and sync the file, write the
 * layout beside its target, then rename both into place; on failure put the pages back and
 * remove the new files.
 */
function writeSnapshot(
  mem: GuestMemory,
  path: string,
  kind: SnapshotLayout['kind'],
  choose: (taken: Taken) => Run[],
  onProgress: ProgressCallback | undefined,
): SnapshotLayout {
  const regions = regionsOf(mem);
  const fileOffsets = new Map(mem.regions().map((r, i) => [r, regions[i].fileOffset]));
  const size = mem.totalSize;
  checkReplaceable(path);
  checkReplaceable(layoutPath(path));
  const tag = uniqueTag();
  const memory = { temp: besidePath(path, tag, 'tmp'), target: path };
  const layoutFile = { temp: besidePath(layoutPath(path), tag, 'tmp'), target: layoutPath(path) };
  let fd: number | undefined;
  try {
    fd = openSync(memory.temp, 'wx');
  } catch (err) {
    throw ioError(err, `creating ${memory.temp}`);
  }
  // Memory with a bitmap that cannot be harvested gets no diff after a full snapshot: take nothing.
  const harvestable = mem.regions().every((r) => r.bitmap === NO_BITMAP || atomicBitmapTarget(r.bitmap) !== undefined);
  const taken: Taken = harvestable ? mem.harvestDirty() : [];
  try {
    const runs = choose(taken);
    // A full snapshot's progress is how far into the file it got; a diff's, the bytes it wrote.
    const total = kind === 'full' ? size : runs.reduce((n, [, , len]) => n + len, 0);
    const data: [number, number][] = [];
    let written = 0;
    for (const [r, at, n] of runs) {
      const fileAt = (fileOffsets.get(r) as number) + at;
      for (let off = 0; off < n; off += PROGRESS_STEP) {
        const len = Math.min(PROGRESS_STEP, n - off);
        r.writeAllVolatileTo(MemoryRegionAddress(at + off), fd, len, fileAt + off);
        written += len;
        onProgress?.(kind === 'full' ? fileAt + off + len : written, total);
      }
      const last = data[data.length - 1];
      if (last !== undefined && last[0] + last[1] === fileAt) last[1] += n;
      else data.push([fileAt, n]);
    }
    ftruncateSync(fd, size);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    const layout: SnapshotLayout = { kind, size, regions, data };
    writeNewFile(layoutFile.temp, layoutBytes(layout, path));
    // Before the commit: a callback that throws still leaves the previous snapshot in place.
    onProgress?.(total, total);
    replaceFiles([memory, layoutFile], tag);
    return layout;
  } catch (err) {
    // Put the taken pages back: the next snapshot or harvest must still see them.
    mem.markDirty(taken);
    if (fd !== undefined) closeQuietly(fd);
    for (const f of [memory.temp, layoutFile.temp]) removeQuietly(f);
    throw err instanceof SnapshotError ? err : ioError(err, `writing ${path}`);
  }
}

/** Cleanup after a failure, which is what is reported: its own errors would only hide it. */
function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {}
}

/** The runs of `region` that hold a non-zero byte, in whole scan pages (the last one cut at the end). */
function nonZeroRuns(region: GuestMemoryRegion): [number, number][] {
  const view = region.asVolatileSlice().view('read');
  const runs: [number, number][] = [];
  let start = -1;
  for (let at = 0; at < view.length; at += SCAN_PAGE) {
    const end = Math.min(at + SCAN_PAGE, view.length);
    const zero = ZERO_PAGE.compare(view, at, end, 0, end - at) === 0;
    if (!zero && start < 0) start = at;
    else if (zero && start >= 0) {
      runs.push([start, at - start]);
      start = -1;
    }
  }
  if (start >= 0) runs.push([start, view.length - start]);
  return runs;
}

const ZERO_PAGE = Buffer.alloc(SCAN_PAGE);

/** Checks the options shared by the snapshot functions and returns the progress callback. */
export function validateOptions(options: WriteSnapshotOptions): ProgressCallback | undefined {
  if (typeof options !== 'object' || options === null) {
    throw new SnapshotError('ERR_INVALID_ARG', `options must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const { onProgress } = options;
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new SnapshotError('ERR_INVALID_ARG', `onProgress must be a function, got ${typeof onProgress}`);
  }
  return onProgress;
}
