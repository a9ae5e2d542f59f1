import { GuestAddress, isIndex } from '../address/address.js';
import type { BackendDescription, MemoryBackend } from '../backend/backend.js';
import { sharedBufferBackend } from '../backend/buffer.js';
import { isSharedArrayBuffer } from '../backend/views.js';
import { WasmMemoryBackend } from '../backend/wasm.js';
import { AtomicBitmap, type SharedBitmapDescription } from '../bitmap/atomic-bitmap.js';
import { type Bitmap, NoopBitmap } from '../bitmap/bitmap.js';
import { GuestmemError } from '../errors.js';
import { GuestMemoryRegion } from '../region/region.js';
import { GuestMemoryError } from './errors.js';
import { GuestMemory } from './guest-memory.js';

/**
 * A whole {@link GuestMemory} as plain data: what {@link shareGuestMemory} makes and
 * {@link rebuildGuestMemory} turns back into the same memory in another worker or process.
 *
 * It is structured-clonable (`postMessage`, `workerData`). Over mmap'd memory only it is JSON
 * too, which is how it reaches another process. It never holds an external ArrayBuffer.
 */
export interface GuestMemoryDescription {
  /** Marks the data as a guest memory description. */
  readonly type: 'guestmem/memory';
  /** Each distinct backend once; regions refer to them by index. */
  readonly backends: readonly BackendDescription[];
  /** The regions in guest-address order. */
  readonly regions: readonly RegionDescription[];
}

/** One region of a {@link GuestMemoryDescription}. */
export interface RegionDescription {
  /** Guest physical address of its first byte. */
  readonly start: number;
  /** Its length in bytes. */
  readonly length: number;
  /** Where it starts in its backend. */
  readonly offset: number;
  /** Index of its backend in {@link GuestMemoryDescription.backends}. */
  readonly backend: number;
  /** True when every write path refuses it (a ROM, a read-only file). */
  readonly readOnly: boolean;
  /** Its dirty bitmap, when it is tracked: words in a SharedArrayBuffer, or in a backend. */
  readonly bitmap?: SharedBitmapDescription | BackendBitmapDescription | undefined;
}

/** A bitmap whose words live in one of the described backends ({@link AtomicBitmap.inBackend}). */
export interface BackendBitmapDescription {
  /** Bytes covered. */
  readonly byteLength: number;
  /** Bytes per tracked page. */
  readonly pageSize: number;
  /** Index of the backend holding the words in {@link GuestMemoryDescription.backends}. */
  readonly backend: number;
  /** Where the words start in that backend. */
  readonly offset: number;
}

/** Turns a backend description back into a backend over the same memory. */
export type BackendResolver = (description: BackendDescription) => MemoryBackend;

/** Resolvers by description `kind`. */
export type BackendResolvers = Readonly<Record<string, BackendResolver>>;

/** Options of {@link rebuildGuestMemory}. */
export interface RebuildOptions {
  /**
   * Resolvers for kinds the root module does not know, such as those of `guestmem/mmap`
   * (`new MmapResolver().resolvers`). They may also replace the built-in ones.
   */
  resolvers?: BackendResolvers | undefined;
}

/**
 * The kinds guestmem itself resolves: memory in a SharedArrayBuffer and shared WebAssembly
 * memory. Native memory resolves through `guestmem/mmap`, which the root module does not import.
 */
export const BUILTIN_RESOLVERS: BackendResolvers = Object.freeze({
  'shared-array-buffer': sharedBufferBackend,
  'wasm-memory': (d: BackendDescription) => WasmMemoryBackend.fromShared(d),
});

/**
 * Describes `memory` so that another worker or process can rebuild it with
 * {@link rebuildGuestMemory}: its layout, each backend's own description, and each bitmap's
 * shared words. Writes on either side are then seen on the other, and dirty marks go into the
 * same bits. Valid while the memory's backends stay open.
 *
 * @throws {GuestMemoryError} `ERR_REGION_NOT_SHAREABLE` naming the first region whose backend
 *   (heap memory, a non-shared WebAssembly memory, a closed mapping) or bitmap (not shared, or
 *   not an {@link AtomicBitmap}) no other worker can see; the backend's or bitmap's error is
 *   its `cause`. `ERR_INVALID_ARG` when `memory` is not a GuestMemory.
 * @example
 * const mem = GuestMemory.fromRanges([[GuestAddress(0), 0x10000]], { shared: true });
 * const description = shareGuestMemory(mem); // post it, or pass it as workerData
 * const same = rebuildGuestMemory(structuredClone(description));
 * same.writeU8(GuestAddress(0x10), 42);
 * mem.readU8(GuestAddress(0x10)); // => 42
 */
export function shareGuestMemory(memory: GuestMemory): GuestMemoryDescription {
  if (!(memory instanceof GuestMemory)) {
    throw new GuestMemoryError('ERR_INVALID_ARG', 'shareGuestMemory takes a GuestMemory');
  }
  const backends: BackendDescription[] = [];
  const index = new Map<MemoryBackend, number>();
  /** The index of `backend` in `backends`, described the first time; `r` is named if it fails. */
  const indexOf = (backend: MemoryBackend, r: GuestMemoryRegion, what: string): number => {
    let i = index.get(backend);
    if (i === undefined) {
      i = backends.push(describeBackend(backend, r, what)) - 1;
      index.set(backend, i);
    }
    return i;
  };
  const regions = memory.regions().map(
    (r): RegionDescription => ({
      start: r.start,
      length: r.length,
      offset: r.offset,
      readOnly: r.readOnly,
      backend: indexOf(r.backend, r, 'its'),
      bitmap: describeBitmap(r, (words) => indexOf(words, r, "its bitmap's")),
    }),
  );
  return { type: 'guestmem/memory', backends, regions };
}

/**
 * Rebuilds the memory `description` describes, in this worker or process: the same regions
 * over the same memory, with bitmaps over the same bits. Each distinct backend is resolved
 * once, by the resolver of its `kind`.
 *
 * The whole description is checked before the first resolver runs. Resolvers that open
 * resources (mmap) own them: close them through the resolver, also when this throws.
 *
 * @throws {GuestMemoryError} `ERR_DESCRIPTION_INVALID` for data that is not a description;
 *   `ERR_NO_RESOLVER` for a backend kind no resolver handles; the layout errors of
 *   {@link GuestMemory.fromRegions}.
 * @throws {RegionError} as the {@link GuestMemoryRegion} constructor, e.g.
 *   `ERR_REGION_READ_ONLY_BACKEND` for a writable region over a backend that is read-only.
 * @throws {BitmapError} `ERR_BITMAP_INVALID` for bitmap words that do not fit.
 * @throws the errors of the resolvers (for example {@link BackendError}, `MmapError`).
 */
export function rebuildGuestMemory(description: GuestMemoryDescription, options: RebuildOptions = {}): GuestMemory {
  const d = checkDescription(description);
  const resolvers: BackendResolvers = { ...BUILTIN_RESOLVERS, ...options.resolvers };
  const resolve = d.backends.map((b, i) => {
    const resolver = Object.hasOwn(resolvers, b.kind) ? resolvers[b.kind] : undefined;
    if (typeof resolver !== 'function') {
      const hint = b.kind.startsWith('mmap') ? ": pass guestmem/mmap's MmapResolver" : '';
      throw new GuestMemoryError('ERR_NO_RESOLVER', `backend ${i} is of kind '${b.kind}', which no resolver handles${hint}`);
    }
    return resolver;
  });
  const backends = d.backends.map((b, i) => resolve[i](b));
  const bitmaps = d.regions.map(({ bitmap: b }) =>
    b === undefined
      ? undefined
      : 'words' in b
        ? AtomicBitmap.fromShared(b)
        : AtomicBitmap.inBackend(backends[b.backend], b.byteLength, { pageSize: b.pageSize, offset: b.offset }),
  );
  return GuestMemory.fromRegions(
    d.regions.map(
      (r, i) =>
        new GuestMemoryRegion(GuestAddress(r.start), backends[r.backend], {
          offset: r.offset,
          length: r.length,
          readOnly: r.readOnly,
          bitmap: bitmaps[i],
        }),
    ),
  );
}

function describeBackend(b: MemoryBackend, r: GuestMemoryRegion, whose: string): BackendDescription {
  if (typeof b.share !== 'function') throw notShareable(r, `${whose} ${b.kind} backend cannot describe itself`);
  let d: BackendDescription;
  try {
    d = b.share();
  } catch (err) {
    if (err instanceof GuestmemError) throw notShareable(r, `${whose} backend: ${err.message}`, err);
    throw err;
  }
  if (holdsPrivateBuffer(d, 0)) {
    throw notShareable(r, `${whose} ${b.kind} backend described itself with an ArrayBuffer that would be copied, not shared`);
  }
  return d;
}

/** `indexOf` gives the index of the backend holding a bitmap's words, describing it if new. */
function describeBitmap(
  r: GuestMemoryRegion,
  indexOf: (words: MemoryBackend) => number,
): SharedBitmapDescription | BackendBitmapDescription | undefined {
  const bitmap: Bitmap = r.bitmap;
  if (bitmap instanceof NoopBitmap) return undefined;
  if (!(bitmap instanceof AtomicBitmap)) throw notShareable(r, 'its bitmap is not an AtomicBitmap');
  const { backing, byteLength, pageSize } = bitmap;
  if (backing !== undefined) return { byteLength, pageSize, backend: indexOf(backing.backend), offset: backing.offset };
  try {
    return bitmap.share();
  } catch (err) {
    if (err instanceof GuestmemError) throw notShareable(r, `its bitmap: ${err.message}`, err);
    throw err;
  }
}

/** True when `value` holds a non-shared buffer, which postMessage would copy (or refuse). */
function holdsPrivateBuffer(value: unknown, depth: number): boolean {
  if (typeof value !== 'object' || value === null || depth > 8) return false;
  if (value instanceof ArrayBuffer) return true;
  if (ArrayBuffer.isView(value)) return !isSharedArrayBuffer(value.buffer);
  if (isSharedArrayBuffer(value as ArrayBufferLike)) return false;
  return Object.values(value).some((v) => holdsPrivateBuffer(v, depth + 1));
}

function notShareable(r: GuestMemoryRegion, why: string, cause?: unknown): GuestMemoryError {
  return new GuestMemoryError('ERR_REGION_NOT_SHAREABLE', `region ${r.range} cannot be shared: ${why}`, {
    address: r.start,
    length: r.length,
    cause,
  });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** Checks data that may come from another process before anything uses it. */
function checkDescription(d: unknown): GuestMemoryDescription {
  const bad = (why: string) => new GuestMemoryError('ERR_DESCRIPTION_INVALID', `not a guest memory description: ${why}`);
  if (!isObject(d) || d.type !== 'guestmem/memory') throw bad("its type is not 'guestmem/memory'");
  const { backends, regions } = d;
  if (!Array.isArray(backends) || !Array.isArray(regions)) throw bad('backends and regions must be arrays');
  backends.forEach((b, i) => {
    if (!isObject(b) || typeof b.kind !== 'string') throw bad(`backend ${i} has no kind`);
  });
  regions.forEach((r, i) => {
    if (!isObject(r) || !isIndex(r.start) || !isIndex(r.length) || !isIndex(r.offset)) {
      throw bad(`region ${i} needs a start, length and offset that are non-negative safe integers`);
    }
    if (typeof r.readOnly !== 'boolean') throw bad(`region ${i} needs readOnly as a boolean`);
    if (!isIndex(r.backend) || r.backend >= backends.length) throw bad(`region ${i} names backend ${String(r.backend)}, which is not there`);
    const b = r.bitmap;
    if (b !== undefined && (!isObject(b) || !('words' in b || (isIndex(b.backend) && b.backend < backends.length && isIndex(b.offset))))) {
      throw bad(`region ${i} has a bitmap that is neither shared words nor words in one of the backends`);
    }
    // Writes mark after they land: bits that stop short of the region would fail a write half-done.
    if (b !== undefined && !(isIndex(b.byteLength) && b.byteLength >= r.length)) {
      throw bad(`region ${i} has a bitmap of ${String(b.byteLength)} bytes, which does not cover its ${r.length}`);
    }
  });
  return d as unknown as GuestMemoryDescription;
}
