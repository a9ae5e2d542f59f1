import type { BigIntStats } from 'node:fs';
import { validateIndex } from '../address/address.js';
import type { BackendDescription, MemoryBackend } from '../backend/backend.js';
import { BackendError } from '../backend/errors.js';
import { BackingViews, EMPTY_VIEWS } from '../backend/views.js';
import { hex } from '../errors.js';
import { MmapError } from './errors.js';
import { call, host, type NativeHandle, native } from './native.js';

/** Where the memory of an {@link MmapBackend} comes from. */
export type MmapSource =
  /** `MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`: plain guest RAM, pages allocated on touch. */
  | 'anonymous'
  /** `MAP_SHARED | MAP_ANONYMOUS`: shmem without a file; shareable with workers only. */
  | 'anonymous-shared'
  /** A sealed memfd mapped `MAP_SHARED`: shareable with workers and other processes. */
  | 'memfd'
  /** A regular file (or a memfd received from elsewhere) at a file offset. */
  | 'file';

/** Page size of this machine, the granule of {@link MmapBackend.discard}. */
export const PAGE_SIZE: number = native.PAGE_SIZE;

/**
 * The largest chunk one external ArrayBuffer may cover: 4 GiB (Node 20's limit; later Node
 * versions allow more, but 4 GiB keeps every typed-array index below 2^32).
 */
export const MAX_CHUNK_SIZE: number = Math.min(2 ** 32, host.maxBuffer - (host.maxBuffer % PAGE_SIZE));

/**
 * mmap(2) flags for {@link MmapOptions.flags}, as vm-memory's `MmapRegion::build` takes them.
 * Only `MAP_NORESERVE` and `MAP_POPULATE` are accepted; `MAP_FIXED` and `MAP_FIXED_NOREPLACE`
 * exist here so that asking for them can be refused with `ERR_MMAP_FIXED_FORBIDDEN`.
 */
export const MmapFlags = Object.freeze({
  /** Do not reserve swap: a large sparse guest costs only the pages it touches. */
  MAP_NORESERVE: native.MAP_NORESERVE,
  /** Fault every page in at map time (prefetch). */
  MAP_POPULATE: native.MAP_POPULATE,
  /** Refused: it would replace whatever is mapped at the address. */
  MAP_FIXED: native.MAP_FIXED,
  /** Refused, as `MAP_FIXED`. */
  MAP_FIXED_NOREPLACE: native.MAP_FIXED_NOREPLACE,
});

/** Options common to every kind of mapping. */
export interface MmapOptions {
  /**
   * `'thp'`: ask for transparent huge pages (`MADV_HUGEPAGE`). `'hugetlb'`: back a memfd with
   * hugetlbfs pages (only {@link MmapBackend.memfd}; the size must be a multiple of the huge
   * page size, and creation fails with `ENOMEM` when the machine reserved too few).
   */
  hugepages?: 'thp' | 'hugetlb' | undefined;
  /**
   * Fault every page in now (`MADV_POPULATE_WRITE`, or `_READ` when read-only; Linux >= 5.14),
   * so that running out of memory is an error here rather than a SIGBUS or an OOM kill later.
   */
  populate?: boolean | undefined;
  /** Lock the pages in RAM (`mlock`). Needs `CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`. */
  pin?: boolean | undefined;
  /** Extra mmap(2) flags from {@link MmapFlags}. */
  flags?: number | undefined;
  /**
   * Bytes per chunk (see {@link MmapBackend.chunks}): a multiple of {@link PAGE_SIZE} no larger
   * than {@link MAX_CHUNK_SIZE}, which is the default.
   */
  chunkSize?: number | undefined;
}

/** Options of {@link MmapBackend.anonymous}. */
export interface AnonymousOptions extends MmapOptions {
  /** Map `MAP_SHARED` (shmem) rather than private. Default false. */
  shared?: boolean | undefined;
}

/** Options of {@link MmapBackend.memfd}. */
export interface MemfdOptions extends MmapOptions {
  /** The memfd's name, as /proc/PID/fd and /proc/PID/maps show it. Default `'guestmem'`. */
  name?: string | undefined;
}

/** Options of {@link MmapBackend.file}: which file, which part of it, and how. */
export interface FileOptions extends MmapOptions {
  /** An open file descriptor; the backend maps a duplicate and never closes yours. */
  fd?: number | undefined;
  /** Or a path, which the backend opens (read-write when shared) and closes when closed. */
  path?: string | undefined;
  /** Where the mapping starts in the file: a multiple of the page size. Default 0. */
  offset?: number | undefined;
  /** Bytes to map; `offset + size` must not pass the end of the file. */
  size: number;
  /**
   * `MAP_SHARED` (writes reach the file and every other mapping of it) rather than
   * `MAP_PRIVATE` (copy-on-write). Default: true unless {@link FileOptions.readOnly}.
   */
  shared?: boolean | undefined;
  /**
   * Guest memory that must not change: mapped privately, so that the file never changes, and
   * marked {@link MmapBackend.readOnly}, which makes every region over it read-only (guestmem's
   * write paths refuse it). The pages stay writable underneath, because a stray JS write through a
   * raw view to a read-only page would kill the process.
   */
  readOnly?: boolean | undefined;
}

/** Options of {@link MmapBackend.fromShared}. */
export interface FromSharedOptions {
  /**
   * In another process: the descriptor this process received the memfd or file as (for
   * example 3, after `spawn(..., { stdio: ['pipe', 'pipe', 'pipe', backend.fd] })`). The
   * backend maps a duplicate. Leave it out in a worker of the same process.
   */
  fd?: number | undefined;
  /** As {@link MmapOptions.populate} (in a worker: again, over the same mapping). */
  populate?: boolean | undefined;
  /** As {@link MmapOptions.pin} (in a worker: again, over the same mapping). */
  pin?: boolean | undefined;
}

/** The file under a file-backed mapping, which is what {@link checkNoFileOverlap} compares. */
export interface MmapFileIdentity {
  /** `st_dev` of the file. */
  readonly dev: bigint;
  /** `st_ino` of the file. */
  readonly ino: bigint;
  /** Where the mapping starts in the file. */
  readonly start: number;
}

/**
 * What {@link MmapBackend.share} returns: plain data, so it survives `postMessage` and JSON.
 *
 * A worker of the same process rebuilds the very same mapping from `id` (the addon's registry
 * holds it while any backend still owns it). Another process maps the memfd or file again from
 * the descriptor it inherited; `fd` is the owner's number for it, to put in `spawn`'s `stdio`.
 */
export interface MmapSharedDescription extends BackendDescription {
  /** The resolver kind, for `rebuildGuestMemory` (see `MmapResolver`). */
  readonly kind: 'mmap';
  /** Marks the data as a mapping description. */
  readonly type: 'guestmem/mmap';
  /** Identifies the owner's process; a worker of another process cannot use `id`. */
  readonly process: number;
  /** The mapping's key in its process's registry. */
  readonly id: number;
  /** As {@link MmapBackend.source}. */
  readonly source: MmapSource;
  /** As {@link MmapBackend.size}. */
  readonly size: number;
  /** As {@link MmapBackend.chunkSize}: the rebuilt backend has the same chunks. */
  readonly chunkSize: number;
  /** As {@link MmapBackend.pageSize}. */
  readonly pageSize: number;
  /** As {@link MmapBackend.readOnly}: regions over the rebuilt backend are read-only too. */
  readonly readOnly: boolean;
  /** True for `MAP_SHARED`: only such memory (or read-only memory) can be shared across processes. */
  readonly mapShared: boolean;
  /** The owner's descriptor of the memfd or file, if any. */
  readonly fd?: number | undefined;
  /** Where the mapping starts in that file. */
  readonly fileOffset: number;
  /** `st_dev` of the file, as a decimal string (JSON has no BigInt). */
  readonly dev?: string | undefined;
  /** `st_ino` of the file, as a decimal string. */
  readonly ino?: string | undefined;
}

/**
 * One part of an {@link MmapBackend} of at most {@link MAX_CHUNK_SIZE} bytes: a content
 * backend of its own, over its own external ArrayBuffer.
 *
 * A runtime caps one ArrayBuffer (Node 20: at 4 GiB), so larger memory is given to guestmem as
 * consecutive chunks, one region each; GuestMemory's lookup (last hit, then binary search)
 * keeps finding the right one fast. Closing the backend closes every chunk.
 */
export class MmapChunk implements MemoryBackend {
  readonly kind = 'mmap';
  readonly byteOffset = 0;
  readonly shared = true;
  /** The backend this chunk is part of. */
  readonly backend: MmapBackend;
  /** Where the chunk starts in its backend. */
  readonly offset: number;
  readonly size: number;
  readonly #load: (defer: boolean) => BackingViews;

  /** @internal Made by {@link MmapBackend.chunks}. */
  constructor(backend: MmapBackend, offset: number, size: number, load: (defer: boolean) => BackingViews) {
    this.backend = backend;
    this.offset = offset;
    this.size = size;
    this.#load = load;
  }

  /** See {@link MmapBackend.readOnly}. */
  get readOnly(): boolean {
    return this.backend.readOnly;
  }

  /** The file and offset under this chunk, for {@link checkNoFileOverlap}. */
  get file(): MmapFileIdentity | undefined {
    const f = this.backend.file;
    return f === undefined ? undefined : { ...f, start: f.start + this.offset };
  }

  /**
   * The whole mapping's description and where this chunk lies in it, which an
   * `MmapResolver` turns back into the same chunk.
   *
   * @throws {BackendError} `ERR_BACKEND_CLOSED`
   */
  share(): MmapChunkDescription {
    return { kind: 'mmap-chunk', mapping: this.backend.share(), offset: this.offset, size: this.size };
  }

  /**
   * Views of this chunk's bytes, from its first byte; made on the first call, except inside
   * {@link deferChunkViews} for this chunk, which answers empty views until then.
   *
   * @throws {BackendError} `ERR_BACKEND_CLOSED` once the backend was closed.
   */
  views(): BackingViews {
    return this.#load(deferred?.has(this) === true);
  }
}

/** What {@link MmapChunk.share} returns: plain data, JSON included. */
export interface MmapChunkDescription extends BackendDescription {
  readonly kind: 'mmap-chunk';
  /** The whole mapping the chunk is part of. */
  readonly mapping: MmapSharedDescription;
  /** Where the chunk starts in the mapping. */
  readonly offset: number;
  /** The chunk's bytes. */
  readonly size: number;
}

interface Init {
  handle: NativeHandle;
  source: MmapSource;
  readOnly: boolean;
  mapShared: boolean;
  fd: number | undefined;
  file: MmapFileIdentity | undefined;
  chunkSize: number;
  pageSize: number;
}

/** Closes the descriptor of a backend that was collected without being closed. */
const fdCleanup = new FinalizationRegistry<number>((fd) => {
  // A throw here would be an uncaught exception; EBADF would mean someone else closed our fd.
  try {
    host.fs.closeSync(fd);
  } catch {}
});

/**
 * Guest memory mapped with mmap(2) through guestmem's native addon: anonymous, memfd or file.
 *
 * A content backend ({@link MemoryBackend}) like the heap ones, with what only native memory
 * gives: sharing with workers and other processes ({@link MmapBackend.share}), memory that can
 * be handed to a hypervisor or a vhost-user device ({@link MmapBackend.fd},
 * {@link MmapBackend.address}), huge pages, pinning and discard.
 *
 * Lifetime: {@link MmapBackend.close} (or `using`) detaches every ArrayBuffer this backend made,
 * so every view over them, including raw ones handed out earlier, reads as empty and guestmem's
 * next access asks {@link MmapBackend.views} again, which throws `ERR_BACKEND_CLOSED`. The
 * mapping itself goes when nothing in any thread holds it any more: each backend and each
 * ArrayBuffer holds a native reference, so a worker's view never loses its memory to another
 * thread's close or GC.
 *
 * Memory above {@link MAX_CHUNK_SIZE} has several {@link MmapBackend.chunks}; give each its own
 * region. {@link MmapBackend.views} answers only for memory of one chunk.
 *
 * Not preventable here: a file that another process truncates under a mapping raises SIGBUS
 * when the lost pages are touched (memfds made here are sealed against that).
 */
export class MmapBackend implements MemoryBackend, Disposable {
  readonly kind = 'mmap';
  readonly byteOffset = 0;
  /** Always true: every mapping can be seen by workers through {@link MmapBackend.share}. */
  readonly shared = true;
  readonly size: number;
  /** Where the memory comes from. */
  readonly source: MmapSource;
  /**
   * True when the memory must not change: regions over it are read-only (`ERR_READ_ONLY` on
   * every write path) and cannot be made writable. The mapping is private besides, so a stray
   * write through a raw view changes only this process's copy, never the file.
   */
  readonly readOnly: boolean;
  /** True for a `MAP_SHARED` mapping: writes reach the memfd or file and its other mappings. */
  readonly mapShared: boolean;
  /** The file and offset under a memfd or file mapping, for {@link checkNoFileOverlap}. */
  readonly file: MmapFileIdentity | undefined;
  /** Bytes per chunk; see {@link MmapBackend.chunks}. */
  readonly chunkSize: number;
  /** The mapping's page size (the huge page size for hugetlb): the granule of `discard`. */
  readonly pageSize: number;
  readonly #handle: NativeHandle;
  #fd: number | undefined;
  #closed = false;
  /** Set by the `pin` option: a discard of a private file mapping pins its new pages too. */
  #pinned = false;
  readonly #chunks: readonly MmapChunk[];
  /** Views per chunk, made on first use; the buffers are what close() detaches. */
  #views: (BackingViews | undefined)[] = [];

  private constructor(init: Init) {
    this.#handle = init.handle;
    this.size = init.handle.length;
    this.source = init.source;
    this.readOnly = init.readOnly;
    this.mapShared = init.mapShared;
    this.#fd = init.fd;
    this.file = init.file;
    this.chunkSize = init.chunkSize;
    this.pageSize = init.pageSize;
    const chunks: MmapChunk[] = [];
    for (let offset = 0, i = 0; offset < this.size; offset += init.chunkSize, i++) {
      const size = Math.min(init.chunkSize, this.size - offset);
      chunks.push(new MmapChunk(this, offset, size, (defer) => this.#chunkViews(i, offset, size, defer)));
    }
    this.#chunks = chunks;
    if (init.fd !== undefined) fdCleanup.register(this, init.fd, this);
  }

  /**
   * Anonymous memory: private (`MAP_NORESERVE`, so a large sparse guest costs only what it
   * touches) or, with `shared`, shmem that workers see but no other process can map.
   *
   * @throws {MmapError} `ERR_MMAP_FAILED` (with `errno`), `ERR_MMAP_FIXED_FORBIDDEN`,
   *   `ERR_MMAP_INVALID_ARGUMENT`; `AddressError` for a size that is not a safe integer.
   * @example
   * using ram = MmapBackend.anonymous(256 << 20, { hugepages: 'thp' });
   */
  static anonymous(size: number, options: AnonymousOptions = {}): MmapBackend {
    checkSize(size);
    if (options.hugepages === 'hugetlb') {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', "hugepages: 'hugetlb' needs a memfd: use MmapBackend.memfd");
    }
    const shared = options.shared === true;
    const flags =
      native.MAP_ANONYMOUS |
      (shared ? native.MAP_SHARED : native.MAP_PRIVATE | native.MAP_NORESERVE) |
      extraFlags(options.flags);
    return MmapBackend.#open(size, flags, undefined, 0, options, {
      source: shared ? 'anonymous-shared' : 'anonymous',
      readOnly: false,
      mapShared: shared,
      file: undefined,
      pageSize: PAGE_SIZE,
    });
  }

  /**
   * Memory in a new memfd, mapped shared and sealed against shrinking (a shrunk memfd would
   * SIGBUS every process mapping it), then sealed with `F_SEAL_SEAL`, so that no other holder of
   * the fd can add seals (`F_SEAL_WRITE` would break guest writes). {@link MmapBackend.fd} can go
   * to another process or a vhost-user device, which then sees the same RAM.
   *
   * @throws {MmapError} `ERR_MMAP_FAILED` (with `errno`; `ENOMEM` for hugetlb pages the machine
   *   does not have), `ERR_MMAP_FIXED_FORBIDDEN`, `ERR_MMAP_INVALID_ARGUMENT`.
   */
  static memfd(size: number, options: MemfdOptions = {}): MmapBackend {
    checkSize(size);
    const name = options.name ?? 'guestmem';
    if (typeof name !== 'string' || new TextEncoder().encode(name).length > 248 || name.includes('\0')) {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'name must be a string of at most 248 bytes without NUL');
    }
    const flags = native.MAP_SHARED | extraFlags(options.flags);
    const hugetlb = options.hugepages === 'hugetlb';
    const fd = call('create a memfd', () => native.memfdCreate(name, hugetlb));
    let st: BigIntStats;
    try {
      call(`size the memfd to ${size} bytes`, () => host.fs.ftruncateSync(fd, size));
      call('seal the memfd', () => native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_SEAL));
      st = call('stat the memfd', () => host.fs.fstatSync(fd, { bigint: true }));
    } catch (e) {
      host.fs.closeSync(fd);
      throw e;
    }
    return MmapBackend.#open(size, flags, fd, 0, options, {
      source: 'memfd',
      readOnly: false,
      mapShared: true,
      file: { dev: st.dev, ino: st.ino, start: 0 },
      // hugetlbfs reports its page size as the block size.
      pageSize: hugetlb ? Number(st.blksize) : PAGE_SIZE,
    });
  }

  /**
   * A file (or any memfd) from `offset`, shared or private, as vm-memory's
   * `MmapRegion::from_file` / `build`.
   *
   * @throws {MmapError} `ERR_MMAP_INVALID_OFFSET_LENGTH` when `offset + size` overflows,
   *   `ERR_MMAP_PAST_EOF` when it passes the end of the file, `ERR_MMAP_FIXED_FORBIDDEN`,
   *   `ERR_MMAP_FAILED` (with `errno`: `EINVAL` for an unaligned offset, `EACCES` for a shared
   *   mapping of a read-only descriptor...), `ERR_MMAP_INVALID_ARGUMENT`.
   */
  static file(options: FileOptions): MmapBackend {
    const { fd, path, offset = 0, size } = options;
    checkSize(size);
    validateIndex(offset, 'offset');
    if (fd !== undefined) validateIndex(fd, 'fd');
    if ((fd === undefined) === (path === undefined)) {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'give exactly one of fd and path');
    }
    const readOnly = options.readOnly === true;
    if (readOnly && options.shared === true) {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'a read-only mapping is private: drop shared: true');
    }
    if (options.hugepages === 'hugetlb') {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', "hugepages: 'hugetlb' needs a memfd: use MmapBackend.memfd");
    }
    const mapShared = !readOnly && options.shared !== false;
    checkOffsetLength(offset, size);
    const flags = (mapShared ? native.MAP_SHARED : native.MAP_PRIVATE) | extraFlags(options.flags);
    const own =
      fd !== undefined
        ? call(`duplicate fd ${fd}`, () => native.dup(fd))
        : call(`open ${path}`, () => host.fs.openSync(path as string, mapShared ? 'r+' : 'r'));
    let file: MmapFileIdentity;
    try {
      file = checkFile(own, offset, size);
    } catch (e) {
      host.fs.closeSync(own);
      throw e;
    }
    return MmapBackend.#open(size, flags, own, offset, options, {
      source: 'file',
      readOnly,
      mapShared,
      file,
      pageSize: PAGE_SIZE,
    });
  }

  /**
   * Rebuilds the memory that {@link MmapBackend.share} described: in a worker of the same
   * process, the very same mapping (no `fd`); in another process, a new mapping of the memfd
   * or file it inherited (`fd`). Writes on either side are seen on the other. The new backend
   * is an owner of its own: close it too.
   *
   * @throws {BackendError} `ERR_BACKEND_CLOSED` when every owner of the mapping closed it.
   * @throws {MmapError} `ERR_MMAP_NOT_SHAREABLE` for a description from another process
   *   without `fd`, or for private or anonymous memory in another process;
   *   `ERR_MMAP_INVALID_ARGUMENT` for something that is not a description; the errors of
   *   {@link MmapBackend.file} for the new mapping.
   */
  static fromShared(description: MmapSharedDescription, options: FromSharedOptions = {}): MmapBackend {
    const d = checkDescription(description);
    if (options.fd === undefined) {
      if (d.process !== native.PROCESS_KEY) {
        throw new MmapError(
          'ERR_MMAP_NOT_SHAREABLE',
          'this description comes from another process: pass the memfd or file it inherited as { fd }',
        );
      }
      const handle = call('acquire the shared mapping', () => native.acquire(d.id));
      if (handle.length !== d.size) {
        native.release(handle);
        throw new MmapError('ERR_MMAP_NOT_SHAREABLE', `mapping ${d.id} is not the one described`);
      }
      const file =
        d.dev === undefined || d.ino === undefined
          ? undefined
          : { dev: BigInt(d.dev), ino: BigInt(d.ino), start: d.fileOffset };
      return new MmapBackend({
        handle,
        source: d.source,
        readOnly: d.readOnly,
        mapShared: d.mapShared,
        fd: undefined,
        file,
        chunkSize: d.chunkSize,
        pageSize: d.pageSize,
      }).#prepare(options);
    }
    if (d.source === 'anonymous' || d.source === 'anonymous-shared') {
      throw new MmapError('ERR_MMAP_NOT_SHAREABLE', `${d.source} memory has no file another process could map`);
    }
    if (!d.mapShared && !d.readOnly) {
      throw new MmapError(
        'ERR_MMAP_NOT_SHAREABLE',
        'a private writable mapping cannot be shared with another process: its writes are its own',
      );
    }
    const inherited = validateIndex(options.fd, 'fd');
    const fd = call(`duplicate fd ${inherited}`, () => native.dup(inherited));
    let file: MmapFileIdentity;
    try {
      file = checkFile(fd, d.fileOffset, d.size);
    } catch (e) {
      host.fs.closeSync(fd);
      throw e;
    }
    const flags = d.mapShared ? native.MAP_SHARED : native.MAP_PRIVATE;
    return MmapBackend.#open(
      d.size,
      flags,
      fd,
      d.fileOffset,
      { populate: options.populate, pin: options.pin, chunkSize: d.chunkSize },
      { source: d.source, readOnly: d.readOnly, mapShared: d.mapShared, file, pageSize: d.pageSize },
    );
  }

  /** Host virtual address of the first byte (for KVM memory slots, vhost-user memory tables). */
  get address(): bigint {
    return this.#handle.address;
  }

  /** The memfd or file descriptor this backend owns (closed with it); undefined otherwise. */
  get fd(): number | undefined {
    return this.#fd;
  }

  /** True once {@link MmapBackend.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The views of the whole memory, when it fits one chunk.
   *
   * @throws {BackendError} `ERR_BACKEND_CLOSED` once closed; `ERR_BACKEND_SIZE` when the memory
   *   spans several chunks (use {@link MmapBackend.chunks}).
   */
  views(): BackingViews {
    if (this.#chunks.length > 1 && !this.#closed) {
      throw new BackendError(
        'ERR_BACKEND_SIZE',
        `${this.size} bytes of mmap'd memory span ${this.#chunks.length} chunks of at most ${this.chunkSize} bytes: give each of backend.chunks() a region`,
        { length: this.size },
      );
    }
    return this.#chunks[0].views();
  }

  /** The memory as consecutive backends of at most {@link MmapBackend.chunkSize} bytes each. */
  chunks(): readonly MmapChunk[] {
    return this.#chunks;
  }

  /**
   * Frees `[offset, offset + length)` so that it reads as zeros: `MADV_DONTNEED` for private
   * anonymous memory, `MADV_REMOVE` (a hole punched in the memfd, shmem or file: what
   * `fallocate(PUNCH_HOLE)` does) for shared memory, which every other mapping then sees too.
   * A private file mapping gets fresh anonymous pages over the range (`MADV_DONTNEED` would
   * bring back the file's contents); the file is untouched, and pinned memory stays pinned.
   *
   * @throws {MmapError} `ERR_MMAP_RANGE` for a range outside the memory or not aligned to
   *   {@link MmapBackend.pageSize}; `ERR_MMAP_READ_ONLY`; `ERR_MMAP_FAILED` (`EOPNOTSUPP` on a
   *   file system that cannot punch holes).
   * @throws {BackendError} `ERR_BACKEND_CLOSED`
   */
  discard(offset: number, length: number): void {
    validateIndex(offset, 'offset');
    validateIndex(length, 'length');
    this.#checkOpen();
    if (this.readOnly) {
      throw new MmapError('ERR_MMAP_READ_ONLY', 'cannot discard read-only memory', { address: offset, length });
    }
    if (offset + length > this.size || offset % this.pageSize !== 0 || length % this.pageSize !== 0) {
      throw new MmapError(
        'ERR_MMAP_RANGE',
        `discard [${hex(offset)}, +${hex(length)}) must lie in [0, ${hex(this.size)}) on ${hex(this.pageSize)}-byte pages`,
        { address: offset, length },
      );
    }
    if (length === 0) return;
    const what = `discard ${length} bytes at ${hex(offset)}`;
    if (this.source === 'file' && !this.mapShared) {
      call(what, () => native.zeroPrivate(this.#handle, offset, length));
      // The new pages are a mapping of their own, which the old one's mlock does not cover.
      if (this.#pinned) call(`pin ${length} bytes at ${hex(offset)}`, () => native.mlock(this.#handle, offset, length));
      return;
    }
    const advice = this.mapShared ? native.MADV_REMOVE : native.MADV_DONTNEED;
    call(what, () => native.madvise(this.#handle, offset, length, advice));
  }

  /**
   * A description of this memory that a worker or another process rebuilds it from with
   * {@link MmapBackend.fromShared}. It is valid while some backend of the mapping is open;
   * keep this one open until the other side has rebuilt it.
   *
   * @throws {BackendError} `ERR_BACKEND_CLOSED`
   */
  share(): MmapSharedDescription {
    this.#checkOpen();
    return {
      kind: 'mmap',
      type: 'guestmem/mmap',
      process: native.PROCESS_KEY,
      id: this.#handle.id,
      source: this.source,
      size: this.size,
      chunkSize: this.chunkSize,
      pageSize: this.pageSize,
      readOnly: this.readOnly,
      mapShared: this.mapShared,
      fd: this.#fd,
      fileOffset: this.file?.start ?? 0,
      dev: this.file?.dev.toString(),
      ino: this.file?.ino.toString(),
    };
  }

  /**
   * Closes this backend, now: every view it handed out becomes empty (its ArrayBuffers are
   * detached), {@link MmapBackend.views} throws `ERR_BACKEND_CLOSED`, and its descriptor is
   * closed. The memory is unmapped once no backend or view in any thread holds it.
   * Closing twice does nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const v of this.#views) if (v !== undefined) native.detach(v.buffer as ArrayBuffer);
    this.#views = [];
    native.release(this.#handle);
    if (this.#fd !== undefined) {
      fdCleanup.unregister(this);
      host.fs.closeSync(this.#fd);
      this.#fd = undefined;
    }
  }

  /** Same as {@link MmapBackend.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new BackendError('ERR_BACKEND_CLOSED', 'the mmap backend was closed');
  }

  #chunkViews(i: number, offset: number, size: number, defer: boolean): BackingViews {
    this.#checkOpen();
    let v = this.#views[i];
    if (v === undefined && defer) return EMPTY_VIEWS;
    if (v === undefined) {
      const buffer = call('wrap the mapping', () => native.wrap(this.#handle, offset, size));
      v = new BackingViews(buffer, true);
      this.#views[i] = v;
    }
    return v;
  }

  /** Maps and prepares; `fd` (owned) is closed if anything fails. */
  static #open(
    size: number,
    flags: number,
    fd: number | undefined,
    offset: number,
    options: MmapOptions,
    init: Omit<Init, 'handle' | 'fd' | 'chunkSize'>,
  ): MmapBackend {
    let backend: MmapBackend;
    try {
      const chunkSize = checkChunkSize(options.chunkSize);
      const handle = call(`map ${size} bytes`, () => native.map(size, flags, fd ?? -1, offset));
      backend = new MmapBackend({ ...init, handle, fd, chunkSize });
    } catch (e) {
      if (fd !== undefined) host.fs.closeSync(fd);
      throw e;
    }
    return backend.#prepare(options);
  }

  /** Applies the huge page, populate and pin options to the whole mapping; closes on failure. */
  #prepare(options: MmapOptions): this {
    const all = (what: string, fn: () => void) => call(`${what} ${this.size} bytes`, fn);
    try {
      if (options.hugepages === 'thp') {
        all('advise huge pages for', () => native.madvise(this.#handle, 0, this.size, native.MADV_HUGEPAGE));
      }
      if (options.populate === true) {
        const advice = this.readOnly ? native.MADV_POPULATE_READ : native.MADV_POPULATE_WRITE;
        all('populate', () => native.madvise(this.#handle, 0, this.size, advice));
      }
      if (options.pin === true) {
        all('pin', () => native.mlock(this.#handle, 0, this.size));
        this.#pinned = true;
      }
    } catch (e) {
      this.close();
      throw e;
    }
    return this;
  }
}

/** The chunks of the {@link deferChunkViews} running, if any. */
let deferred: ReadonlySet<MmapChunk> | undefined;

/**
 * Runs `build`, in which those of `chunks` whose views were not made yet answer
 * empty views (every access misses them) rather than wrapping their memory; returns what `build`
 * returns.
 *
 * For whoever builds regions over many chunks (a vhost-user memory table of terabytes): a
 * region keeps the views it was built with and asks its backend again at the first access they
 * do not cover, so each chunk is wrapped when first used. Wrapping costs more than it seems:
 * V8 counts each 4 GiB external ArrayBuffer as memory in use and runs a full collection for
 * "external memory pressure" at every wrap (seen with --trace-gc), so wrapping the 256 chunks of 1 TiB up front took 0.8 s on a quiet machine here, and the 2048
 * of 8 TiB 9 s (6 s and 67 s on a busy one).
 */
export function deferChunkViews<T>(chunks: Iterable<MmapChunk>, build: () => T): T {
  const outer = deferred;
  deferred = new Set([...(outer ?? []), ...chunks]);
  try {
    return build();
  } finally {
    deferred = outer;
  }
}

/**
 * Checks that no two file-backed backends (or chunks) map the same bytes of one file, as
 * vm-memory's `MappingOverlap`; a GuestMemory builder calls it with its regions' backends.
 * Files are told apart by `st_dev` and `st_ino`, so two descriptors of one file are caught.
 * Other backends are ignored.
 *
 * @throws {MmapError} `ERR_MMAP_OVERLAP`, with the file offset and length of the overlap.
 */
export function checkNoFileOverlap(backends: Iterable<MemoryBackend>): void {
  const ranges: { dev: bigint; ino: bigint; start: number; end: number }[] = [];
  for (const b of backends) {
    const f = b instanceof MmapBackend || b instanceof MmapChunk ? b.file : undefined;
    if (f !== undefined) ranges.push({ dev: f.dev, ino: f.ino, start: f.start, end: f.start + b.size });
  }
  ranges.sort((a, b) => (a.dev !== b.dev ? cmp(a.dev, b.dev) : a.ino !== b.ino ? cmp(a.ino, b.ino) : a.start - b.start));
  let cur = ranges[0];
  for (const r of ranges.slice(1)) {
    if (r.dev !== cur.dev || r.ino !== cur.ino) {
      cur = r;
    } else if (r.start < cur.end) {
      throw new MmapError(
        'ERR_MMAP_OVERLAP',
        `two mappings of file ${r.dev}:${r.ino} overlap at file offset ${hex(r.start)}`,
        { address: r.start, length: Math.min(cur.end, r.end) - r.start },
      );
    } else {
      cur = r;
    }
  }
}

function cmp(a: bigint, b: bigint): number {
  return a < b ? -1 : 1;
}

function checkSize(size: number): void {
  if (validateIndex(size, 'size') === 0) {
    throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', 'size must be greater than 0', { length: 0 });
  }
}

function checkOffsetLength(offset: number, size: number): void {
  if (offset + size > Number.MAX_SAFE_INTEGER) {
    throw new MmapError(
      'ERR_MMAP_INVALID_OFFSET_LENGTH',
      `file offset ${hex(offset)} + size ${hex(size)} overflows`,
      { address: offset, length: size },
    );
  }
}

function extraFlags(flags: number | undefined): number {
  if (flags === undefined) return 0;
  if (validateIndex(flags, 'flags') & (native.MAP_FIXED | native.MAP_FIXED_NOREPLACE)) {
    throw new MmapError('ERR_MMAP_FIXED_FORBIDDEN', 'MAP_FIXED is forbidden: guestmem never maps at a chosen address');
  }
  if (flags > 0x7fffffff || (flags & ~(native.MAP_NORESERVE | native.MAP_POPULATE)) !== 0) {
    throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', `flags ${hex(flags)}: only MAP_NORESERVE and MAP_POPULATE may be added`);
  }
  return flags;
}

function checkChunkSize(chunkSize: number | undefined): number {
  if (chunkSize === undefined) return MAX_CHUNK_SIZE;
  validateIndex(chunkSize, 'chunkSize');
  if (chunkSize === 0 || chunkSize % PAGE_SIZE !== 0 || chunkSize > MAX_CHUNK_SIZE) {
    throw new MmapError(
      'ERR_MMAP_INVALID_ARGUMENT',
      `chunkSize ${hex(chunkSize)} must be a multiple of ${hex(PAGE_SIZE)} up to ${hex(MAX_CHUNK_SIZE)}`,
    );
  }
  return chunkSize;
}

/** fstat checks of a file about to be mapped: regular, long enough. Returns its identity. */
function checkFile(fd: number, offset: number, size: number): MmapFileIdentity {
  checkOffsetLength(offset, size);
  const st = call(`stat fd ${fd}`, () => host.fs.fstatSync(fd, { bigint: true }));
  if (!st.isFile()) {
    throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', `fd ${fd} is not a regular file or memfd`);
  }
  if (BigInt(offset + size) > st.size) {
    throw new MmapError(
      'ERR_MMAP_PAST_EOF',
      `mapping [${hex(offset)}, +${hex(size)}) passes the end of the file (${st.size} bytes)`,
      { address: offset, length: size },
    );
  }
  return { dev: st.dev, ino: st.ino, start: offset };
}

const SOURCES: readonly string[] = ['anonymous', 'anonymous-shared', 'memfd', 'file'];

/** Checks untrusted input (it may come from another process) before anything uses it. */
function checkDescription(d: MmapSharedDescription): MmapSharedDescription {
  const bad = (why: string) =>
    new MmapError('ERR_MMAP_INVALID_ARGUMENT', `not a guestmem/mmap shared description: ${why}`);
  if (typeof d !== 'object' || d === null || d.type !== 'guestmem/mmap') throw bad('wrong type');
  if (!SOURCES.includes(d.source)) throw bad('unknown source');
  for (const key of ['process', 'id', 'size', 'chunkSize', 'pageSize', 'fileOffset'] as const) {
    if (!Number.isSafeInteger(d[key]) || d[key] < 0) throw bad(`${key} is not a safe integer`);
  }
  if (d.size === 0 || d.chunkSize === 0 || d.chunkSize % PAGE_SIZE !== 0 || d.chunkSize > MAX_CHUNK_SIZE) {
    throw bad('size or chunkSize out of range');
  }
  if (d.pageSize < PAGE_SIZE || d.pageSize > 2 ** 30 || (d.pageSize & (d.pageSize - 1)) !== 0) {
    throw bad('pageSize is not a page size');
  }
  if (typeof d.readOnly !== 'boolean' || typeof d.mapShared !== 'boolean') throw bad('flags are not booleans');
  if ((d.dev !== undefined && !/^\d+$/.test(d.dev)) || (d.ino !== undefined && !/^\d+$/.test(d.ino))) {
    throw bad('dev/ino are not decimal strings');
  }
  return {
    kind: 'mmap',
    type: d.type,
    process: d.process,
    id: d.id,
    source: d.source,
    size: d.size,
    chunkSize: d.chunkSize,
    pageSize: d.pageSize,
    readOnly: d.readOnly,
    mapShared: d.mapShared,
    fileOffset: d.fileOffset,
    dev: d.dev,
    ino: d.ino,
  };
}
