import type { WebAssemblyMemory } from '../backend/wasm.js';

/** `new WebAssembly.Memory(...)`, typed without the DOM lib. */
export function newWasmMemory(descriptor: { initial: number; maximum?: number; shared?: boolean }): WebAssemblyMemory {
  const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: typeof descriptor) => WebAssemblyMemory } }).WebAssembly;
  return new wasm.Memory(descriptor);
}
