import type { BackingViews } from './views.js';

/**
 * What a backend says about itself so that another worker or process can reach the same
 * memory: plain data (structured-clonable; JSON too when it holds no buffer), whose `kind`
 * names the resolver that turns it back into a backend (see `rebuildGuestMemory`).
 */
export interface BackendDescription {
  /** Which resolver rebuilds it: `'shared-array-buffer'`, `'wasm-memory'`, `'mmap'`, ... */
  readonly kind: string;
}

/**
 * Where the bytes of guest memory live: a content backend.
 *
 * A region reads and writes through {@link MemoryBackend.views}: typed views of one buffer, of
 * which the backend's bytes are `[byteOffset, byteOffset + size)`. The region caches the views it
 * was given and asks again only when an access misses them, which is how a WebAssembly memory
 * that grew (detaching its old buffer) or a closed native mapping is noticed without a check of
 * its own on the hot path.
 */
export interface MemoryBackend {
  /** What kind of memory this is: `'heap'`, `'shared'`, `'wasm'`, `'adopted'`, `'mmap'`, ... */
  readonly kind: string;
  /** Usable bytes, counted from {@link MemoryBackend.byteOffset}. May grow (WebAssembly memory). */
  readonly size: number;
  /** Where the backend's first byte sits in the buffer of {@link MemoryBackend.views}. */
  readonly byteOffset: number;
  /**
   * True when the memory can be seen by other workers (or processes), which is what makes
   * Atomics meaningful and a shareable description possible.
   */
  readonly shared: boolean;
  /**
   * True for memory that must not change (a read-only file mapping): regions over it are
   * read-only. Absent means writable.
   */
  readonly readOnly?: boolean;
  /**
   * The views of the backend's current buffer.
   *
   * @throws {BackendError} `ERR_BACKEND_CLOSED` once the backend was closed.
   */
  views(): BackingViews;
  /**
   * A description of this memory that another worker (or process) rebuilds it from. Backends
   * that cannot be shared leave it out or throw.
   *
   * @throws {BackendError} `ERR_BACKEND_NOT_SHAREABLE` for memory only this thread can see.
   */
  share?(): BackendDescription;
}
