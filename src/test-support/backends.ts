import type { MemoryBackend } from '../backend/backend.js';
import { heapBackend, sharedBackend } from '../backend/buffer.js';
import { WasmMemoryBackend } from '../backend/wasm.js';
import { newWasmMemory } from './wasm.js';

/** A factory per in-process backend kind, each making `size` bytes (wasm: one 64 KiB page, at least `size`). */
export function inProcessBackends(size: number): Record<string, () => MemoryBackend> {
  return {
    heap: () => heapBackend(size),
    shared: () => sharedBackend(size),
    wasm: () => new WasmMemoryBackend(newWasmMemory({ initial: Math.max(1, Math.ceil(size / 65536)) })),
  };
}
