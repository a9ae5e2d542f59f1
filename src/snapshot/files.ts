/**
 * The files of snapshots: opening what is read without blocking and only when it is a regular
 * file, and replacing a snapshot's files so that a failure at any step leaves the previous ones.
 *
 * Durability: a new file's data is fsynced before it is renamed into place, and the directory
 * is fsynced after the renames, so that after a crash a name never holds an empty or partial
 * file. The old files are moved aside before the new ones come in (so that no new file is ever
 * paired with an old one): a crash in between leaves the names empty, and the previous snapshot
 * only under its moved-aside names (`<name>.<tag>.old`), to be renamed back by hand.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, openSync, renameSync, type Stats, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { SnapshotError } from './errors.js';

/** A file opened for reading (or, for a merge, writing) and checked to be a regular file. */
export interface OpenFile {
  readonly fd: number;
  /** Its length when it was opened. */
  readonly size: number;
}

/**
 * Opens `path` without blocking (a FIFO would wait for a writer forever) and keeps it only if
 * the open file is a regular file: checked on the descriptor, so the file checked is the file
 * read. Symbolic links are followed.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_NOT_A_FILE` for a directory, FIFO, device or socket;
 * `ERR_SNAPSHOT_IO` when it cannot be opened.
 */
export function openRegular(path: string, write = false): OpenFile {
  let fd: number;
  try {
    fd = openSync(path, (write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw notAFile(path, 'a directory');
    throw ioError(err, `opening ${path}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notAFile(path, kindOf(st));
    return { fd, size: st.size };
  } catch (err) {
    closeSync(fd);
    throw err instanceof SnapshotError ? err : ioError(err, `checking ${path}`);
  }
}

/**
 * Throws unless `path` is absent or a regular file: a snapshot replaces its files by renaming
 * new ones over them, which must not replace a device, a directory or a symbolic link.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_NOT_A_FILE`, `ERR_SNAPSHOT_IO`.
 */
export function checkReplaceable(path: string): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw ioError(err, `checking ${path}`);
  }
  if (!st.isFile()) throw notAFile(path, kindOf(st));
}

/** A name beside `path` for a file that becomes `path` later (`kind` `'tmp'`) or was it (`'old'`). */
export function besidePath(path: string, tag: string, kind: 'tmp' | 'old'): string {
  return `${path}.${tag}.${kind}`;
}

/** A tag that no other snapshot in flight uses (other processes and threads included). */
export function uniqueTag(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Creates `path` (which must not exist), writes `data` to it and fsyncs it. */
export function writeNewFile(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'wx');
  try {
    for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A new file written and synced at `temp`, to become `target`. */
export interface Staged {
  readonly temp: string;
  readonly target: string;
}

/**
 * Renames each staged file over its target, in order; the last is the commit point. Targets
 * replaced are first moved aside (as `<target>.<tag>.old`), the last (the layout) first, so that
 * until the last rename the last target is not there, and no file is paired with a file of the
 * other snapshot. A
 * failed step undoes the earlier ones in reverse: the targets are as before, the staged files
 * at their temporary names. The moved-aside files are removed once the directory is synced.
 * A single file has nothing to be paired with: its target is kept by a second name (a hard
 * link) and replaced by one rename, so that a reader sees the old file or the new one, never
 * none; a failure renames the old one back over it.
 *
 * @throws {SnapshotError} `ERR_SNAPSHOT_IO` (the undo, if it failed too, is named in the message).
 */
export function replaceFiles(staged: readonly Staged[], tag: string): void {
  const done: [from: string, to: string][] = [];
  const move = (from: string, to: string, absentOk: boolean) => {
    try {
      renameSync(from, to);
    } catch (err) {
      if (absentOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    done.push([from, to]);
  };
  const aside = staged.map((s) => besidePath(s.target, tag, 'old'));
  let kept = false;
  try {
    kept = staged.length === 1 && keep(staged[0].target, aside[0]);
    // The last target (the layout) goes aside first: from then on no pair of files is restorable.
    if (!kept) for (let i = staged.length - 1; i >= 0; i--) move(staged[i].target, aside[i], true);
    for (const s of staged) move(s.temp, s.target, false);
    syncDirectory(dirname(staged[0].target));
  } catch (err) {
    let undo = '';
    const back = (from: string, to: string) => {
      try {
        renameSync(from, to);
        return true;
      } catch (e) {
        undo += `; moving ${from} back to ${to} failed too: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
        return false;
      }
    };
    // Renaming a name over another link of the same file does nothing: the second name then goes.
    if (kept) {
      if (back(aside[0], staged[0].target)) removeQuietly(aside[0]);
    } else for (const [from, to] of done.reverse()) back(to, from);
    const failure = ioError(err, `replacing ${staged.map((s) => s.target).join(' and ')}`);
    if (undo === '') throw failure;
    throw new SnapshotError('ERR_SNAPSHOT_IO', `${failure.message}${undo}`, { cause: err });
  }
  // The new files are in place: an old one that cannot be removed harms nothing beside them.
  for (const path of aside) removeQuietly(path);
}

/** Links `path` as `name` too; false when there is no `path` or its file system has no hard links. */
function keep(path: string, name: string): boolean {
  try {
    linkSync(path, name);
    return true;
  } catch (err) {
    if (['ENOENT', 'EPERM', 'EOPNOTSUPP', 'EMLINK'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw err;
  }
}

/** Removes `path` if it is there; cleanup whose own failure would only hide what is reported. */
export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {}
}

/** Makes the renames in `dir` durable. */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function notAFile(path: string, kind: string): SnapshotError {
  return new SnapshotError('ERR_SNAPSHOT_NOT_A_FILE', `${path} is ${kind}, not a regular file`);
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** Wraps a system error of `what`. */
export function ioError(err: unknown, what: string): SnapshotError {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new SnapshotError('ERR_SNAPSHOT_IO', `${what} failed: ${code}`, { cause: err });
}
