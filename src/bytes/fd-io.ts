/**
 * File-descriptor transfers straight between an fd and memory views: one `readv`/`writev` (or
 * `pread`/`pwrite`) per call, never through an intermediate Buffer.
 */
import { nodeBuiltin } from '../node-builtin.js';
import { VolatileMemoryError } from './errors.js';

/** Where to read or write in the file: an offset, or `null` for the fd's current position. */
export type FilePosition = number | null;

// Loaded only where it exists, so that the modules with fd methods load in a browser too; there
// a transfer fails as ERR_IO saying why.
const fs = nodeBuiltin<typeof import('node:fs')>('node:fs');
const noFs = (): never => {
  throw new Error('file descriptors need Node.js (node:fs)');
};

/** The fs calls used, replaceable in tests to inject EINTR/EAGAIN. @internal */
export const fsCalls: Pick<typeof import('node:fs'), 'readSync' | 'readvSync' | 'writeSync' | 'writevSync'> = {
  readSync: fs?.readSync ?? noFs,
  readvSync: fs?.readvSync ?? noFs,
  writeSync: fs?.writeSync ?? noFs,
  writevSync: fs?.writevSync ?? noFs,
};

/**
 * One transfer between `fd` and the given views, retried while it fails with EINTR (libuv does
 * not retry reads itself). Returns the bytes moved.
 *
 * EAGAIN/EWOULDBLOCK (a non-blocking fd with nothing to give) is thrown as `ERR_IO`: returning 0
 * would read as end of file.
 */
export function transfer(fd: number, views: Uint8Array[], position: FilePosition, toMemory: boolean, done: number): number {
  for (;;) {
    try {
      if (views.length === 1) {
        const v = views[0];
        return toMemory
          ? fsCalls.readSync(fd, v, 0, v.length, position)
          : fsCalls.writeSync(fd, v, 0, v.length, position);
      }
      return toMemory
        ? fsCalls.readvSync(fd, views, position ?? undefined)
        : fsCalls.writevSync(fd, views, position ?? undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINTR') continue;
      throw ioError(err, toMemory, done);
    }
  }
}

function ioError(err: unknown, toMemory: boolean, completed: number): VolatileMemoryError {
  const e = err as NodeJS.ErrnoException;
  return new VolatileMemoryError(
    'ERR_IO',
    `${toMemory ? 'reading from' : 'writing to'} the file descriptor failed after ${completed} bytes: ${e.code ?? e.message}`,
    { cause: err, completed },
  );
}

/** Validates an fd argument. */
export function validateFd(fd: unknown): number {
  if (Number.isInteger(fd) && (fd as number) >= 0 && (fd as number) <= 0x7fff_ffff) return fd as number;
  throw new VolatileMemoryError('ERR_INVALID_ARG', `fd must be a non-negative int32, got ${String(fd)}`);
}

/** Validates a file position argument. */
export function validatePosition(position: unknown): FilePosition {
  if (position === null || position === undefined) return null;
  if (Number.isSafeInteger(position) && (position as number) >= 0) return position as number;
  throw new VolatileMemoryError('ERR_INVALID_ARG', `position must be null or a non-negative safe integer, got ${String(position)}`);
}
