/**
 * Loads the native addon (native/guestmem.c) and turns its failures into typed errors.
 *
 * Importing this module throws {@link MmapError} `ERR_NATIVE_UNAVAILABLE` where the addon cannot
 * be used: not Linux, not Node.js, no binary that loads, or a runtime that forbids external
 * ArrayBuffers (Electron's V8 sandbox). Node's built-in modules are imported dynamically for the
 * same reason, so that even a browser gets the typed error rather than a failed link.
 */
import { BackendError } from '../backend/errors.js';
import { GuestmemError } from '../errors.js';
import { MmapError, type MmapErrorCode } from './errors.js';

/** One reference to a mapping, owned by a JS object; the addon unmaps after the last one goes. */
export interface NativeHandle {
  /** The mapping's key in the process-wide registry: what a worker acquires it by. */
  readonly id: number;
  /** Host virtual address of the mapping's first byte. */
  readonly address: bigint;
  /** Bytes mapped. */
  readonly length: number;
}

/** The addon's exports; see native/guestmem.c for what each checks. */
export interface NativeBinding {
  readonly PAGE_SIZE: number;
  readonly PROCESS_KEY: number;
  readonly MAP_SHARED: number;
  readonly MAP_PRIVATE: number;
  readonly MAP_ANONYMOUS: number;
  readonly MAP_NORESERVE: number;
  readonly MAP_POPULATE: number;
  readonly MAP_FIXED: number;
  readonly MAP_FIXED_NOREPLACE: number;
  readonly MADV_DONTNEED: number;
  readonly MADV_REMOVE: number;
  readonly MADV_HUGEPAGE: number;
  readonly MADV_POPULATE_READ: number;
  readonly MADV_POPULATE_WRITE: number;
  readonly F_SEAL_SEAL: number;
  readonly F_SEAL_SHRINK: number;
  readonly F_SEAL_GROW: number;
  readonly F_SEAL_WRITE: number;
  map(length: number, flags: number, fd: number, offset: number): NativeHandle;
  acquire(id: number): NativeHandle;
  release(handle: NativeHandle): void;
  wrap(handle: NativeHandle, offset: number, length: number): ArrayBuffer;
  detach(buffer: ArrayBuffer): void;
  madvise(handle: NativeHandle, offset: number, length: number, advice: number): void;
  mlock(handle: NativeHandle, offset: number, length: number): void;
  zeroPrivate(handle: NativeHandle, offset: number, length: number): void;
  memfdCreate(name: string, hugetlb: boolean): number;
  addSeals(fd: number, seals: number): void;
  getSeals(fd: number): number;
  dup(fd: number): number;
}

/** The Node built-ins the mmap layer uses, loaded without a static import. */
export interface Host {
  readonly fs: typeof import('node:fs');
  /** The largest ArrayBuffer this runtime makes (Node 20: 4 GiB). */
  readonly maxBuffer: number;
  /** `[name, description]` of a (negative) errno, as libuv reports them. */
  readonly errnoInfo: (errno: number) => [string, string] | undefined;
}

const loaded = await load();
/** The loaded addon. */
export const native: NativeBinding = loaded.native;
/** Node's built-ins, as the addon's loader found them. */
export const host: Host = loaded.host;

/**
 * Runs `fn` (a call into the addon or into `node:fs`) and rethrows its failure as a typed error:
 * a system call's errno as {@link MmapError} `ERR_MMAP_FAILED`, the addon's own refusals under
 * their codes, a released handle as {@link BackendError} `ERR_BACKEND_CLOSED`.
 *
 * @param what - What was being done, for the message (`'map 4096 bytes'`).
 */
export function call<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw translate(e, what);
  }
}

function translate(e: unknown, what: string): Error {
  if (e instanceof GuestmemError) return e; // already typed (a validateIndex, say)
  const err = e as { errno?: unknown; syscall?: unknown; code?: unknown; message?: unknown };
  if (typeof err?.errno === 'number') {
    const info = host.errnoInfo(-Math.abs(err.errno));
    const name = info?.[0] ?? `errno ${Math.abs(err.errno)}`;
    const syscall = typeof err.syscall === 'string' ? err.syscall : undefined;
    return new MmapError(
      'ERR_MMAP_FAILED',
      `cannot ${what}: ${syscall ?? 'system call'} failed with ${name} (${info?.[1] ?? 'unknown error'})`,
      { errno: name, syscall, cause: e },
    );
  }
  const message = `cannot ${what}: ${String(err?.message ?? e)}`;
  if (err?.code === 'ERR_BACKEND_CLOSED') {
    return new BackendError('ERR_BACKEND_CLOSED', message, { cause: e });
  }
  const code = typeof err?.code === 'string' && NATIVE_CODES.has(err.code) ? err.code : undefined;
  // ERR_INVALID_ARG_VALUE from the addon means the TypeScript checks let something through.
  return new MmapError((code ?? 'ERR_MMAP_INVALID_ARGUMENT') as MmapErrorCode, message, { cause: e });
}

/** Codes the addon throws that keep their meaning here. */
const NATIVE_CODES = new Set<string>([
  'ERR_MMAP_FIXED_FORBIDDEN',
  'ERR_MMAP_INVALID_OFFSET_LENGTH',
  'ERR_MMAP_PAST_EOF',
  'ERR_MMAP_FAILED',
  'ERR_NATIVE_UNAVAILABLE',
]);

async function load(): Promise<{ native: NativeBinding; host: Host }> {
  const unavailable = (why: string, cause?: unknown) =>
    new MmapError('ERR_NATIVE_UNAVAILABLE', `guestmem/mmap is unavailable: ${why}`, { cause });
  let modules;
  try {
    modules = await Promise.all([
      import('node:module'),
      import('node:fs'),
      import('node:util'),
      import('node:buffer'),
    ]);
  } catch (e) {
    throw unavailable('it needs Node.js (node:module, node:fs)', e);
  }
  const [{ createRequire }, fs, util, buffer] = modules;
  if (process.platform !== 'linux') {
    throw unavailable(`it needs Linux (mmap, memfd_create, madvise), this is ${process.platform}`);
  }
  // The build from source (a clone after `npm ci`) wins over the binary shipped in the package.
  const candidates = [
    '../../native/build/Release/guestmem.node',
    `../../prebuilds/${process.platform}-${process.arch}/guestmem.node`,
  ];
  const require = createRequire(import.meta.url);
  const errors: unknown[] = [];
  let native: NativeBinding | undefined;
  for (const path of candidates) {
    try {
      native = require(path) as NativeBinding;
      break;
    } catch (e) {
      errors.push(e);
    }
  }
  if (native === undefined) {
    const tried = candidates.map((p) => new URL(p, import.meta.url).pathname).join(', ');
    // The interesting failure is one that found a file (bad ELF, missing glibc symbol).
    const cause =
      errors.find((e) => (e as { code?: unknown }).code !== 'MODULE_NOT_FOUND') ?? errors.at(-1);
    throw unavailable(
      `no loadable addon (tried ${tried}); in a clone, run \`npm run build:native\``,
      cause,
    );
  }
  // Probe once: a runtime with a V8 sandbox loads the addon but refuses external buffers.
  try {
    const probe = native.map(native.PAGE_SIZE, native.MAP_PRIVATE | native.MAP_ANONYMOUS, -1, 0);
    try {
      native.detach(native.wrap(probe, 0, native.PAGE_SIZE));
    } finally {
      native.release(probe);
    }
  } catch (e) {
    throw unavailable(`the addon loaded but cannot wrap memory: ${(e as Error).message}`, e);
  }
  const errorMap = util.getSystemErrorMap();
  return {
    native,
    host: {
      fs,
      maxBuffer: buffer.constants.MAX_LENGTH,
      errnoInfo: (errno) => errorMap.get(errno),
    },
  };
}
