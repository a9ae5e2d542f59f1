/**
 * `guestmem/mmap`: guest memory mapped with mmap(2) through guestmem's native addon (Linux).
 *
 * Importing this module throws {@link MmapError} `ERR_NATIVE_UNAVAILABLE` where the addon cannot
 * be loaded or used (another OS, a browser, a runtime without external ArrayBuffers), with the
 * underlying failure as `cause`. The main `guestmem` entry never imports it, so the rest of
 * guestmem works everywhere.
 *
 * @module
 */
export { MmapError, type MmapErrorCode, type MmapErrorDetails } from './errors.js';
export {
  type AnonymousOptions,
  checkNoFileOverlap,
  deferChunkViews,
  type FileOptions,
  type FromSharedOptions,
  MAX_CHUNK_SIZE,
  MmapBackend,
  MmapChunk,
  type MmapChunkDescription,
  type MmapFileIdentity,
  MmapFlags,
  type MemfdOptions,
  type MmapOptions,
  type MmapSharedDescription,
  type MmapSource,
  PAGE_SIZE,
} from './backend.js';
export { mmapFds, MmapResolver, type MmapResolverOptions } from './resolver.js';
export { type MmapBitmapOptions, mmapGuestMemory, type MmapGuestMemoryOptions, type MmapRange, type MmapRangeOptions } from './builder.js';
