import { isIndex, validateIndex } from '../address/address.js';
import { hex } from '../errors.js';
import type { BackendDescription, MemoryBackend } from './backend.js';
import { BackendError } from './errors.js';
import { type BackingViews, isSharedArrayBuffer, sharedMemoryMissing, viewsOf } from './views.js';

/** A backend over a fixed JS buffer: heap ArrayBuffer, SharedArrayBuffer, or adopted bytes. */
class BufferBackend implements MemoryBackend {
  readonly kind: string;
  readonly size: number;
  readonly byteOffset: number;
  readonly shared: boolean;
  readonly #views: BackingViews;

  constructor(kind: string, bytes: Uint8Array) {
    this.kind = kind;
    this.#views = viewsOf(bytes.buffer);
    this.size = bytes.length;
    this.byteOffset = bytes.byteOffset;
    this.shared = this.#views.shared;
  }

  views(): BackingViews {
    return this.#views;
  }

  share(): SharedBufferDescription {
    if (!this.shared) {
      throw new BackendError(
        'ERR_BACKEND_NOT_SHAREABLE',
        `${this.kind} memory lives in an ArrayBuffer only this thread can see; back it with a SharedArrayBuffer to share it`,
        { length: this.size },
      );
    }
    return { kind: 'shared-array-buffer', buffer: this.#views.buffer as SharedArrayBuffer, byteOffset: this.byteOffset, size: this.size };
  }
}

/** How a backend over a SharedArrayBuffer describes itself (structured-clonable, not JSON). */
export interface SharedBufferDescription extends BackendDescription {
  readonly kind: 'shared-array-buffer';
  /** The memory itself: postMessage shares a SharedArrayBuffer rather than copying it. */
  readonly buffer: SharedArrayBuffer;
  /** Where the backend's bytes start in `buffer`. */
  readonly byteOffset: number;
  /** The backend's bytes. */
  readonly size: number;
}

/**
 * Rebuilds, in this worker, the backend a {@link SharedBufferDescription} describes: the same
 * bytes of the same SharedArrayBuffer.
 *
 * @throws {BackendError} `ERR_INVALID_ARG` for anything else.
 */
export function sharedBufferBackend(description: BackendDescription): MemoryBackend {
  const { kind, buffer, byteOffset, size } = description as Partial<SharedBufferDescription>;
  if (
    kind !== 'shared-array-buffer' ||
    buffer === undefined ||
    !isSharedArrayBuffer(buffer) ||
    !isIndex(byteOffset) ||
    !isIndex(size) ||
    byteOffset + size > buffer.byteLength
  ) {
    throw new BackendError('ERR_INVALID_ARG', 'not a shared-array-buffer description: it needs a SharedArrayBuffer and a byteOffset and size inside it');
  }
  return new BufferBackend('shared', new Uint8Array(buffer, byteOffset, size));
}

function allocate(size: number, shared: boolean): Uint8Array {
  validateIndex(size, 'size');
  const missing = shared ? sharedMemoryMissing() : undefined;
  if (missing !== undefined) throw new BackendError('ERR_SHARED_MEMORY_UNAVAILABLE', `cannot allocate shared memory: ${missing}`, { length: size });
  try {
    return new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
  } catch (err) {
    throw new BackendError('ERR_BACKEND_SIZE', `cannot allocate ${hex(size)} bytes: ${(err as Error).message}`, { length: size, cause: err });
  }
}

/**
 * Zeroed memory on the JS heap (an ArrayBuffer): private to this thread.
 *
 * @throws {BackendError} `ERR_BACKEND_SIZE` when the engine cannot allocate it.
 */
export function heapBackend(size: number): MemoryBackend {
  return new BufferBackend('heap', allocate(size, false));
}

/**
 * Memory in a SharedArrayBuffer: new and zeroed when given a size, or an existing buffer (for
 * example one received from another worker). Atomics work on it.
 *
 * @throws {BackendError} `ERR_BACKEND_SIZE` when the engine cannot allocate it;
 *   `ERR_SHARED_MEMORY_UNAVAILABLE` where there is no SharedArrayBuffer (a web page that is not
 *   cross-origin isolated: the message names the headers it needs).
 */
export function sharedBackend(sizeOrBuffer: number | SharedArrayBuffer): MemoryBackend {
  const bytes = typeof sizeOrBuffer === 'number' ? allocate(sizeOrBuffer, true) : new Uint8Array(sizeOrBuffer);
  if (!isSharedArrayBuffer(bytes.buffer)) {
    throw new BackendError('ERR_INVALID_ARG', 'sharedBackend needs a size or a SharedArrayBuffer');
  }
  return new BufferBackend('shared', bytes);
}

/**
 * Memory the caller already has, e.g. a region of a larger buffer. Shared when the bytes live in
 * a SharedArrayBuffer.
 */
export function adoptBackend(bytes: Uint8Array): MemoryBackend {
  if (!(bytes instanceof Uint8Array)) {
    throw new BackendError('ERR_INVALID_ARG', 'adoptBackend needs a Uint8Array');
  }
  return new BufferBackend('adopted', bytes);
}
