/**
 * The layout file of a memory snapshot: which guest regions the memory file holds, where, and
 * which of its bytes carry data. It sits beside the memory file as `<file>.json`, so that the
 * memory file itself stays plain guest memory (regions in guest-address order, back to back, as
 * Firecracker writes it) that can be mapped or compared as it is.
 */
import { closeSync, readSync } from 'node:fs';
import { hex } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { SnapshotError } from './errors.js';
import { besidePath, ioError, openRegular, removeQuietly, replaceFiles, uniqueTag, writeNewFile } from './files.js';

/** Identifies the layout files guestmem writes. */
const FORMAT = 'guestmem-memory-snapshot';
const VERSION = 1;

/**
 * The largest layout file read or written (256 MiB): room for millions of data runs, and far
 * below the engine's limit on one string, so that a hostile file cannot exhaust memory.
 */
export const MAX_LAYOUT_BYTES = 256 * 1024 * 1024;

/** A guest region as a snapshot records it. */
export interface SnapshotRegion {
  /** Guest physical address of the region's first byte. */
  readonly start: number;
  /** Bytes in the region. */
  readonly length: number;
  /** Where the region's bytes start in the memory file. */
  readonly fileOffset: number;
}

/** What a snapshot's layout file says. */
export interface SnapshotLayout {
  /** `'full'`: every byte of memory (zero runs left as holes); `'diff'`: only the pages dirty since the previous snapshot. */
  readonly kind: 'full' | 'diff';
  /** The memory file's length: the sum of the regions' lengths. */
  readonly size: number;
  /** The guest regions, in guest-address order, back to back in the memory file. */
  readonly regions: readonly SnapshotRegion[];
  /**
   * The `[fileOffset, length]` runs of the memory file that carry data, ascending and disjoint.
   * Everything else reads as zeros in a full snapshot and is not part of a diff.
   */
  readonly data: readonly (readonly [number, number])[];
}

/** The layout file of the memory file at `path`. */
export function layoutPath(path: string): string {
  return `${path}.json`;
}

/** The regions of `mem` as a snapshot of it lays them out. */
export function regionsOf(mem: GuestMemory): SnapshotRegion[] {
  let fileOffset = 0;
  return mem.regions().map((r) => {
    const region = { start: r.start, length: r.length, fileOffset };
    fileOffset += r.length;
    return region;
  });
}

/**
 * The text of `layout`'s file.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_LAYOUT_TOO_BIG` when it would pass
 * {@link MAX_LAYOUT_BYTES}: a snapshot that could not be restored is not written.
 */
export function layoutBytes(layout: SnapshotLayout, path: string): Buffer {
  const text = Buffer.from(`${JSON.stringify({ format: FORMAT, version: VERSION, ...layout })}\n`);
  if (text.length > MAX_LAYOUT_BYTES) throw tooBig(layoutPath(path), text.length);
  return text;
}

/** Replaces the layout file of `path`, atomically and durably (a reader sees the old file or the new one). */
export function writeLayout(path: string, layout: SnapshotLayout): void {
  const text = layoutBytes(layout, path);
  const target = layoutPath(path);
  const tag = uniqueTag();
  const temp = besidePath(target, tag, 'tmp');
  try {
    writeNewFile(temp, text);
    replaceFiles([{ temp, target }], tag);
  } catch (err) {
    removeQuietly(temp);
    throw err instanceof SnapshotError ? err : ioError(err, `writing ${temp}`);
  }
}

/**
 * Reads and checks the layout file of `path`. It is opened without blocking and read only if it
 * is a regular file of at most {@link MAX_LAYOUT_BYTES}.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_IO` when it cannot be read; `ERR_SNAPSHOT_NOT_A_FILE`
 * when it is not a regular file (a FIFO, a device, a directory); `ERR_SNAPSHOT_LAYOUT_TOO_BIG`;
 * `ERR_SNAPSHOT_INVALID` when it is not a well-formed guestmem layout (regions back to back from
 * offset 0, data runs ascending, disjoint and inside the file) or not of kind `kind`.
 */
export function readLayout(path: string, kind: SnapshotLayout['kind']): SnapshotLayout {
  const file = layoutPath(path);
  const text = readCapped(file);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SnapshotError('ERR_SNAPSHOT_INVALID', `${file} is not JSON`, { cause: err });
  }
  const layout = checkLayout(raw, file);
  if (layout.kind !== kind) {
    throw new SnapshotError('ERR_SNAPSHOT_INVALID', `${file} describes a ${layout.kind} snapshot where a ${kind} one was expected`);
  }
  return layout;
}

/** The text of the regular file `file`, refused beyond {@link MAX_LAYOUT_BYTES} (even if it grows while read). */
function readCapped(file: string): string {
  const { fd, size } = openRegular(file);
  try {
    if (size > MAX_LAYOUT_BYTES) throw tooBig(file, size);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // The whole file and one byte more (to see it end) first; a file that grows, in 64 KiB steps.
      const chunk = Buffer.allocUnsafe(total < size ? size - total + 1 : 65536);
      let n: number;
      try {
        n = readSync(fd, chunk, 0, chunk.length, total);
      } catch (err) {
        throw ioError(err, `reading ${file}`);
      }
      if (n === 0) break;
      total += n;
      if (total > MAX_LAYOUT_BYTES) throw tooBig(file, total);
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function tooBig(file: string, length: number): SnapshotError {
  return new SnapshotError('ERR_SNAPSHOT_LAYOUT_TOO_BIG', `${file} has ${hex(length)} bytes, more than a layout may (${hex(MAX_LAYOUT_BYTES)})`, {
    length,
    expected: MAX_LAYOUT_BYTES,
  });
}

function checkLayout(raw: unknown, file: string): SnapshotLayout {
  const bad = (why: string) => new SnapshotError('ERR_SNAPSHOT_INVALID', `${file} is not a guestmem memory snapshot layout: ${why}`);
  if (typeof raw !== 'object' || raw === null) throw bad('not an object');
  const o = raw as Record<string, unknown>;
  if (o.format !== FORMAT) throw bad(`format is ${JSON.stringify(o.format)}`);
  if (o.version !== VERSION) throw bad(`version ${JSON.stringify(o.version)} is not ${VERSION}`);
  if (o.kind !== 'full' && o.kind !== 'diff') throw bad(`kind is ${JSON.stringify(o.kind)}`);
  if (!isCount(o.size)) throw bad('size is not a non-negative safe integer');
  if (!Array.isArray(o.regions) || o.regions.length === 0) throw bad('no regions');
  let fileOffset = 0;
  const regions: SnapshotRegion[] = o.regions.map((r: unknown, i: number) => {
    const x = r as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || !isCount(x.start) || !isCount(x.length) || x.length === 0 || x.fileOffset !== fileOffset) {
      throw bad(`region ${i} is malformed or not at file offset ${hex(fileOffset)}`);
    }
    fileOffset += x.length as number;
    return { start: x.start as number, length: x.length as number, fileOffset: x.fileOffset as number };
  });
  if (fileOffset !== o.size) throw bad(`the regions hold ${hex(fileOffset)} bytes, the size says ${hex(o.size)}`);
  if (!Array.isArray(o.data)) throw bad('no data runs');
  let end = 0;
  const data = o.data.map((run: unknown, i: number) => {
    const [at, length] = Array.isArray(run) ? run : [];
    if (!isCount(at) || !isCount(length) || length === 0 || at < end || at + length > fileOffset) {
      throw bad(`data run ${i} is malformed, out of order or beyond the file`);
    }
    end = at + length;
    return [at, length] as const;
  });
  return { kind: o.kind, size: o.size, regions, data };
}

/**
 * Throws unless `layout` describes exactly the regions of `mem`.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_LAYOUT_MISMATCH`
 */
export function checkSameLayout(layout: SnapshotLayout, mem: GuestMemory, file: string): void {
  const ours = regionsOf(mem);
  if (!sameRegions(ours, layout.regions)) {
    const show = (rs: readonly SnapshotRegion[]) => rs.map((r) => `[${hex(r.start)}, ${hex(r.start + r.length)})`).join(' ');
    throw new SnapshotError(
      'ERR_SNAPSHOT_LAYOUT_MISMATCH',
      `${file} holds regions ${show(layout.regions)} but the memory has ${show(ours)}`,
    );
  }
}

/** True when `a` and `b` are the same guest ranges, in the same order. */
export function sameRegions(a: readonly SnapshotRegion[], b: readonly SnapshotRegion[]): boolean {
  return a.length === b.length && a.every((r, i) => r.start === b[i].start && r.length === b[i].length);
}

function isCount(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}
