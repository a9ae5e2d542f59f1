import type { BackendDescription, MemoryBackend } from './backend.js';
import { BackendError } from './errors.js';
import { BackingViews, isSharedArrayBuffer } from './views.js';

/** What the backend uses of a `WebAssembly.Memory` (typed here so as not to need the DOM lib). */
export interface WebAssemblyMemory {
  /** The memory's current buffer (replaced by a new one when a non-shared memory grows). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Adds `deltaPages` 64 KiB pages; returns the old size in pages. */
  grow(deltaPages: number): number;
}

/**
 * The memory of a WebAssembly module as a backend: guest memory a wasm-compiled emulator or
 * device model addresses directly.
 *
 * Growing a non-shared WebAssembly memory detaches its old ArrayBuffer; regions notice the miss
 * on their next access and take fresh views from here, so no access ever reads a dead buffer.
 * A shared memory (`shared: true`) can be sent to workers and supports Atomics.
 */
export class WasmMemoryBackend implements MemoryBackend {
  readonly kind = 'wasm';
  readonly byteOffset = 0;
  /** The WebAssembly memory the guest lives in. */
  readonly memory: WebAssemblyMemory;
  #views: BackingViews;

  constructor(memory: WebAssemblyMemory) {
    this.memory = memory;
    this.#views = new BackingViews(memory.buffer);
  }

  /** Current size: grows with the memory. */
  get size(): number {
    return this.memory.buffer.byteLength;
  }

  get shared(): boolean {
    return isSharedArrayBuffer(this.memory.buffer);
  }

  views(): BackingViews {
    const buffer = this.memory.buffer;
    if (this.#views.buffer !== buffer) this.#views = new BackingViews(buffer);
    return this.#views;
  }

  /**
   * A description holding the memory itself: a shared WebAssembly.Memory is structured-clonable,
   * so a worker receives the same memory (and sees it grow).
   *
   * @throws {BackendError} `ERR_BACKEND_NOT_SHAREABLE` for a memory created without `shared: true`.
   */
  share(): WasmMemoryDescription {
    if (!this.shared) {
      throw new BackendError(
        'ERR_BACKEND_NOT_SHAREABLE',
        'this WebAssembly memory is not shared; create it with { shared: true, maximum } to share it',
        { length: this.size },
      );
    }
    return { kind: 'wasm-memory', memory: this.memory };
  }

  /**
   * Rebuilds, in this worker, the backend a {@link WasmMemoryDescription} describes.
   *
   * @throws {BackendError} `ERR_INVALID_ARG` unless it holds a shared WebAssembly memory.
   */
  static fromShared(description: BackendDescription): WasmMemoryBackend {
    const { kind, memory } = description as Partial<WasmMemoryDescription>;
    const buffer: unknown = typeof memory === 'object' && memory !== null ? memory.buffer : undefined;
    if (kind !== 'wasm-memory' || !isSharedArrayBuffer(buffer) || typeof memory?.grow !== 'function') {
      throw new BackendError('ERR_INVALID_ARG', 'not a wasm-memory description: it needs a shared WebAssembly.Memory');
    }
    return new WasmMemoryBackend(memory);
  }
}

/** How a {@link WasmMemoryBackend} over a shared memory describes itself (structured-clonable). */
export interface WasmMemoryDescription extends BackendDescription {
  readonly kind: 'wasm-memory';
  /** The shared memory itself, which postMessage shares rather than copies. */
  readonly memory: WebAssemblyMemory;
}
