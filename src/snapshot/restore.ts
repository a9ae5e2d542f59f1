/**
 * Loading memory snapshots: a full snapshot plus any chain of diffs into guest memory, and
 * merging a chain of diffs into the full snapshot's file (Firecracker's rebase).
 */
import { closeSync, fsyncSync, readSync, writeSync } from 'node:fs';
import { MemoryRegionAddress } from '../address/address.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { hex } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { SnapshotError } from './errors.js';
import { ioError, openRegular } from './files.js';
import { checkSameLayout, readLayout, sameRegions, type SnapshotLayout, writeLayout } from './layout.js';
import { PROGRESS_STEP, type ProgressCallback, validateOptions, type WriteSnapshotOptions } from './write.js';

/** Options of {@link restoreSnapshot} and {@link mergeSnapshots}. */
export interface RestoreSnapshotOptions extends WriteSnapshotOptions {
  /** Diff snapshots to apply over the full one, oldest first. */
  diffs?: readonly string[] | undefined;
}

/** A snapshot file checked and opened for reading. */
interface OpenSnapshot {
  readonly path: string;
  readonly layout: SnapshotLayout;
  readonly fd: number;
}

/**
 * Loads the full snapshot at `path`, then each of `options.diffs` in order, into `mem`, which must
 * have the snapshot's layout. Bytes outside the full snapshot's data runs become zeros. Every
 * file is opened without blocking and checked (a regular file; layout, kind, length; a layout of
 * at most `MAX_LAYOUT_BYTES`) before the first byte of memory changes, so a FIFO, a device, a
 * directory, a mismatch or a truncated file leaves `mem` untouched. Afterwards every tracked region is clean: the
 * restored memory is the baseline of the next diff.
 *
 * Regions must be writable. A read error after the checks (the disk failing mid-way) is thrown as
 * `ERR_SNAPSHOT_IO` and leaves memory partly restored.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_INVALID`, `ERR_SNAPSHOT_LAYOUT_MISMATCH`,
 * `ERR_SNAPSHOT_TRUNCATED`, `ERR_SNAPSHOT_NOT_A_FILE`, `ERR_SNAPSHOT_LAYOUT_TOO_BIG`,
 * `ERR_SNAPSHOT_IO`, `ERR_INVALID_ARG` (bad options, or a read-only region in `mem`).
 */
export function restoreSnapshot(mem: GuestMemory, path: string, options: RestoreSnapshotOptions = {}): void {
  const onProgress = validateOptions(options);
  withSnapshots(path, validateDiffs(options.diffs), (base, diffs) => {
    for (const s of [base, ...diffs]) checkSameLayout(s.layout, mem, s.path);
    const readOnly = mem.regions().find((r) => r.readOnly);
    if (readOnly !== undefined) {
      throw new SnapshotError('ERR_INVALID_ARG', `region ${readOnly.range} is read-only: a snapshot cannot be restored into it`, {
        address: readOnly.start,
        length: readOnly.length,
      });
    }
    const total = base.layout.size + diffs.reduce((n, d) => n + dataBytes(d.layout), 0);
    let done = 0;
    const regions = mem.regions();
    const fileOffsets = base.layout.regions.map((r) => r.fileOffset);
    // Copies bytes [at, at + n) of `from` into memory (zeros when `from` is undefined), piece by piece.
    const load = (from: OpenSnapshot | undefined, at: number, n: number) => {
      for (let i = 0; n > 0; ) {
        const r = regions[i];
        const off = at - fileOffsets[i];
        if (off >= r.length) {
          i++;
          continue;
        }
        const len = Math.min(n, r.length - off, PROGRESS_STEP);
        if (from === undefined) r.fill(MemoryRegionAddress(off), len, 0);
        else io(() => r.readExactVolatileFrom(MemoryRegionAddress(off), from.fd, len, at), `reading ${from.path}`);
        at += len;
        n -= len;
        done += len;
        onProgress?.(done, total);
      }
    };
    let end = 0;
    for (const [at, n] of base.layout.data) {
      load(undefined, end, at - end);
      load(base, at, n);
      end = at + n;
    }
    load(undefined, end, base.layout.size - end);
    for (const d of diffs) for (const [at, n] of d.layout.data) load(d, at, n);
    for (const r of regions) if (r.bitmap instanceof AtomicBitmap) r.bitmap.resetAll();
    onProgress?.(total, total);
  });
}

/**
 * Applies the diff snapshots `options.diffs` (oldest first) to the full snapshot at `path`, in
 * place, so that it alone restores the latest state. Every file is checked before anything is
 * written. The layout file is replaced last: a merge that fails part-way (an I/O error) leaves a
 * file that must not be restored until the same merge is run again, which completes it.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_INVALID`, `ERR_SNAPSHOT_LAYOUT_MISMATCH` (a diff of
 * another layout), `ERR_SNAPSHOT_TRUNCATED`, `ERR_SNAPSHOT_NOT_A_FILE`,
 * `ERR_SNAPSHOT_LAYOUT_TOO_BIG`, `ERR_SNAPSHOT_IO`, `ERR_INVALID_ARG`.
 */
export function mergeSnapshots(path: string, options: RestoreSnapshotOptions = {}): SnapshotLayout {
  const onProgress = validateOptions(options);
  return withSnapshots(path, validateDiffs(options.diffs), (base, diffs) => {
    for (const d of diffs) checkSameRegions(d, base);
    const total = diffs.reduce((n, d) => n + dataBytes(d.layout), 0);
    const chunk = Buffer.allocUnsafe(Math.min(PROGRESS_STEP, Math.max(total, 1)));
    let done = 0;
    let data = base.layout.data;
    for (const d of diffs) {
      for (const [at, n] of d.layout.data) {
        for (let off = 0; off < n; ) {
          const len = Math.min(chunk.length, n - off);
          io(() => readFully(d.fd, chunk, len, at + off), `reading ${d.path}`);
          io(() => writeFully(base.fd, chunk, len, at + off), `writing ${base.path}`);
          off += len;
          done += len;
          onProgress?.(done, total);
        }
      }
      data = unionOf(data, d.layout.data);
    }
    const layout: SnapshotLayout = { ...base.layout, data };
    // The data first, then the layout that claims it.
    io(() => fsyncSync(base.fd), `syncing ${base.path}`);
    writeLayout(path, layout);
    onProgress?.(total, total);
    return layout;
  }, true);
}

/** Opens and checks the full snapshot and the diffs, runs `body`, and closes them all. */
function withSnapshots<T>(
  path: string,
  diffPaths: readonly string[],
  body: (base: OpenSnapshot, diffs: OpenSnapshot[]) => T,
  writeBase = false,
): T {
  const opened: OpenSnapshot[] = [];
  try {
    opened.push(openSnapshot(path, 'full', writeBase));
    for (const d of diffPaths) opened.push(openSnapshot(d, 'diff', false));
    return body(opened[0], opened.slice(1));
  } finally {
    for (const s of opened) closeSync(s.fd);
  }
}

function openSnapshot(path: string, kind: SnapshotLayout['kind'], write: boolean): OpenSnapshot {
  const layout = readLayout(path, kind);
  const { fd, size } = openRegular(path, write);
  if (size < layout.size) {
    closeSync(fd);
    throw new SnapshotError('ERR_SNAPSHOT_TRUNCATED', `${path} has ${hex(size)} bytes, its layout says ${hex(layout.size)}`, {
      expected: layout.size,
      completed: size,
    });
  }
  return { path, layout, fd };
}

function checkSameRegions(diff: OpenSnapshot, base: OpenSnapshot): void {
  if (!sameRegions(diff.layout.regions, base.layout.regions)) {
    throw new SnapshotError('ERR_SNAPSHOT_LAYOUT_MISMATCH', `${diff.path} is a diff of another memory layout than ${base.path}`);
  }
}

function validateDiffs(diffs: unknown): readonly string[] {
  if (diffs === undefined) return [];
  if (Array.isArray(diffs) && diffs.every((d) => typeof d === 'string')) return diffs;
  throw new SnapshotError('ERR_INVALID_ARG', 'diffs must be an array of file paths');
}

function dataBytes(layout: SnapshotLayout): number {
  return layout.data.reduce((n, [, len]) => n + len, 0);
}

/** The union of two ascending, disjoint run lists, touching runs joined. */
function unionOf(a: readonly (readonly [number, number])[], b: readonly (readonly [number, number])[]): [number, number][] {
  const all = [...a, ...b].sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [at, n] of all) {
    const last = out[out.length - 1];
    if (last !== undefined && at <= last[0] + last[1]) last[1] = Math.max(last[1], at + n - last[0]);
    else out.push([at, n]);
  }
  return out;
}

function readFully(fd: number, buf: Buffer, len: number, pos: number): void {
  for (let done = 0; done < len; ) {
    const n = readSync(fd, buf, done, len - done, pos + done);
    if (n === 0) throw new SnapshotError('ERR_SNAPSHOT_TRUNCATED', `end of file at ${hex(pos + done)}`);
    done += n;
  }
}

function writeFully(fd: number, buf: Buffer, len: number, pos: number): void {
  for (let done = 0; done < len; ) done += writeSync(fd, buf, done, len - done, pos + done);
}

/** Runs `f`, turning anything but a SnapshotError into `ERR_SNAPSHOT_IO` about `what`. */
function io<T>(f: () => T, what: string): T {
  try {
    return f();
  } catch (err) {
    throw err instanceof SnapshotError ? err : ioError(err, what);
  }
}
