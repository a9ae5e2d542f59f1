import { hex } from '../errors.js';
import { BackendError } from './errors.js';

/**
 * The largest buffer one set of views covers: 4 GiB keeps every byte offset below 2^32, so the
 * hot paths may index with `abs >>> 2`. Node 20 caps an external ArrayBuffer at 4 GiB anyway;
 * larger memory is several regions.
 */
export const MAX_VIEW_BYTES = 2 ** 32;

/**
 * Typed views over one buffer, built once and shared by everything that reads that buffer.
 *
 * Every view starts at byte 0 of the buffer, so one absolute byte offset indexes all of them:
 * `u32[abs >>> 2]` is the naturally aligned 4 bytes at `abs`. Alignment is therefore judged on the
 * host offset, as vm-memory judges it on the host pointer. Buffers start at least 8-byte aligned.
 */
export class BackingViews {
  /** The buffer every view covers from byte 0. */
  readonly buffer: ArrayBufferLike;
  /** Bytes. */
  readonly u8: Uint8Array;
  /** For misaligned and big-endian accesses. */
  readonly dv: DataView;
  /** Naturally aligned u16s (host order): `u16[abs >>> 1]`. */
  readonly u16: Uint16Array;
  /** Naturally aligned u32s (host order): `u32[abs >>> 2]`. */
  readonly u32: Uint32Array;
  /** Naturally aligned i32s (host order), for Atomics on 32-bit words. */
  readonly i32: Int32Array;
  /** Naturally aligned u64s (host order): `u64[abs >>> 3]`. */
  readonly u64: BigUint64Array;
  /** Naturally aligned i64s (host order). */
  readonly i64: BigInt64Array;
  /** Naturally aligned f32s (host order). */
  readonly f32: Float32Array;
  /** Naturally aligned f64s (host order); also how a u64 given as a number is stored. */
  readonly f64: Float64Array;
  /**
   * True when other threads may see this memory, so that Atomics are meaningful: a
   * SharedArrayBuffer, or native shared memory wrapped as a plain ArrayBuffer.
   */
  readonly shared: boolean;

  constructor(buffer: ArrayBufferLike, shared: boolean = isSharedArrayBuffer(buffer)) {
    const n = buffer.byteLength;
    if (n > MAX_VIEW_BYTES) {
      throw new BackendError('ERR_BACKEND_SIZE', `a buffer of ${hex(n)} bytes exceeds the 4 GiB one view may cover; split it into regions`, { length: n });
    }
    this.buffer = buffer;
    this.u8 = new Uint8Array(buffer);
    this.dv = new DataView(buffer);
    // Divisions, not shifts: n may be exactly 2^32, where `n >>> 2` would be 0.
    this.u16 = new Uint16Array(buffer, 0, Math.floor(n / 2));
    this.u32 = new Uint32Array(buffer, 0, Math.floor(n / 4));
    this.i32 = new Int32Array(buffer, 0, Math.floor(n / 4));
    this.u64 = new BigUint64Array(buffer, 0, Math.floor(n / 8));
    this.i64 = new BigInt64Array(buffer, 0, Math.floor(n / 8));
    this.f32 = new Float32Array(buffer, 0, Math.floor(n / 4));
    this.f64 = new Float64Array(buffer, 0, Math.floor(n / 8));
    this.shared = shared;
  }
}

const cache = new WeakMap<ArrayBufferLike, BackingViews>();

/** The (cached) views of `buffer`. */
export function viewsOf(buffer: ArrayBufferLike): BackingViews {
  let v = cache.get(buffer);
  if (v === undefined) {
    v = new BackingViews(buffer);
    cache.set(buffer, v);
  }
  return v;
}

/** Views of nothing: what a closed or detached backing answers with, so every access misses. */
export const EMPTY_VIEWS = new BackingViews(new ArrayBuffer(0), false);

export function isSharedArrayBuffer(buffer: unknown): buffer is SharedArrayBuffer {
  return typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer;
}

/**
 * Why this JS environment has no SharedArrayBuffer, or undefined when it has one. Browsers give
 * it only to cross-origin-isolated pages, so every layer that needs it says which headers bring it
 * (nothing touches SharedArrayBuffer at load: heap-only use works on any page).
 */
export function sharedMemoryMissing(): string | undefined {
  if (typeof SharedArrayBuffer === 'function') return undefined;
  return (
    'SharedArrayBuffer is not available here: a web page gets it only when cross-origin isolated, served with ' +
    'the headers `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp` ' +
    '(see `crossOriginIsolated`)'
  );
}

/** guestmem's typed fast paths read multi-byte values with the host's byte order. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
