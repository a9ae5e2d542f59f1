/**
 * guestmem: guest physical memory for virtual machine monitors.
 *
 * @packageDocumentation
 */
export * from './address/address.js';
export * from './address/range.js';
export * from './address/errors.js';
export { GuestmemError, type ErrorDetails } from './errors.js';
export type { BackendDescription, MemoryBackend } from './backend/backend.js';
export { heapBackend, sharedBackend, adoptBackend, sharedBufferBackend, type SharedBufferDescription } from './backend/buffer.js';
export { WasmMemoryBackend, type WasmMemoryDescription, type WebAssemblyMemory } from './backend/wasm.js';
export { BackingViews, MAX_VIEW_BYTES } from './backend/views.js';
export * from './backend/errors.js';
export * from './bitmap/bitmap.js';
export * from './bitmap/atomic-bitmap.js';
export * from './bitmap/errors.js';
export type { Bytes } from './bytes/bytes.js';
export { ByteAccess } from './bytes/access.js';
export type { FilePosition } from './bytes/fd-io.js';
export * from './bytes/errors.js';
export {
  type ValueType,
  type ValueOf,
  type InputOf,
  type U64In,
  u8, i8, u16le, u16be, i16le, i16be, u32le, u32be, i32le, i32be,
  u64le, u64be, i64le, i64be, u64leNumber, u64beNumber, f32le, f32be, f64le, f64be,
} from './bytes/values.js';
export * from './bytes/struct.js';
export { VolatileSlice } from './volatile/slice.js';
export { VolatileRef, VolatileArrayRef } from './volatile/ref.js';
export { ContiguousBytes } from './volatile/contiguous.js';
export { GuestMemoryRegion, type RegionOptions } from './region/region.js';
export * from './region/errors.js';
export {
  GuestMemory,
  GuestMemoryAtomic,
  type FromRangesOptions,
  type GuestDirtyRange,
  type RegionAddress,
} from './memory/guest-memory.js';
export * from './memory/errors.js';
export * from './memory/share.js';
export { SnapshotError, type SnapshotErrorCode } from './snapshot/errors.js';
export { layoutPath, MAX_LAYOUT_BYTES, type SnapshotLayout, type SnapshotRegion } from './snapshot/layout.js';
export { type ProgressCallback, type WriteSnapshotOptions, writeDiffSnapshot, writeFullSnapshot } from './snapshot/write.js';
export { mergeSnapshots, type RestoreSnapshotOptions, restoreSnapshot } from './snapshot/restore.js';
export { MemoryBacking } from './manager/backing.js';
export { GuestMemoryBuilder, type BuiltMemory, type MemoryLayout, type BackingAllocator, type BackingAllocatorOptions, X86_LEGACY_SPLIT } from './manager/builder.js';
export type { UnmappedPolicy } from './manager/dispatch.js';
export * from './manager/errors.js';
export type { FlatSpan, FlatViewEvent, SpanAdded, SpanChanged, SpanKind, SpanRemoved } from './manager/flat-view.js';
export { MemoryManager, RestrictedMemory, type FlatViewListener, type MemoryManagerOptions, type SubscribeOptions } from './manager/manager.js';
export {
  Region,
  RAM_PRIORITY,
  DEVICE_PRIORITY,
  type RegionKind,
  type Visibility,
  type AccessSize,
  type MmioHandler,
  type RomWriteHandler,
  type RegionSpec,
  type BackedRegionSpec,
  type RomRegionSpec,
  type MmioRegionSpec,
  type AliasRegionSpec,
} from './manager/regions.js';
