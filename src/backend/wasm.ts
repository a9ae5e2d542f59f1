import type { MemoryBackend } from './backend.js';
import { BackingViews, isSharedArrayBuffer } from './views.js';

/** What the backend uses of a `WebAssembly.Memory` (typed here so as not to need the DOM lib). */
export interface WebAssemblyMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
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
}
