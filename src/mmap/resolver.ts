import type { BackendDescription } from '../backend/backend.js';
import type { BackendResolvers, GuestMemoryDescription } from '../memory/share.js';
import { MmapBackend, type MmapChunk, type MmapChunkDescription, type MmapSharedDescription } from './backend.js';
import { MmapError } from './errors.js';

/** Options of {@link MmapResolver}. */
export interface MmapResolverOptions {
  /**
   * In another process: for each descriptor number of the owner (the `fd` of its mapping
   * descriptions, see {@link mmapFds}), the number this process inherited it as. Leave it out
   * in a worker of the owner's process, which reaches the very same mappings.
   */
  fds?: Readonly<Record<number, number>> | undefined;
}

/**
 * Rebuilds mmap'd backends for `rebuildGuestMemory`, and owns what it rebuilt.
 *
 * Chunks of one mapping become chunks of one rebuilt {@link MmapBackend}, as in the owner.
 * Every backend it opened stays open until {@link MmapResolver.close} (or `using`), which is
 * also how a rebuild that failed half-way gives its mappings back.
 *
 * @example
 * using ram = MmapBackend.memfd(1 << 20);
 * const mem = mmapGuestMemory([[GuestAddress(0), ram]]);
 * const description = shareGuestMemory(mem); // to a worker as workerData, to a child as JSON
 * using mmap = new MmapResolver(); // in a child: new MmapResolver({ fds: { [ram.fd]: 3 } })
 * const same = rebuildGuestMemory(description, { resolvers: mmap.resolvers });
 * same.writeU32LE(GuestAddress(0x100), 7);
 * mem.readU32LE(GuestAddress(0x100)); // => 7
 */
export class MmapResolver implements Disposable {
  /** The resolvers to give `rebuildGuestMemory`: kinds `'mmap'` and `'mmap-chunk'`. */
  readonly resolvers: BackendResolvers;
  readonly #fds: Readonly<Record<number, number>> | undefined;
  readonly #opened = new Map<string, MmapBackend>();

  constructor(options: MmapResolverOptions = {}) {
    this.#fds = options.fds;
    this.resolvers = Object.freeze({
      mmap: (d: BackendDescription) => this.#backend(d as MmapSharedDescription),
      'mmap-chunk': (d: BackendDescription) => this.#chunk(d as MmapChunkDescription),
    });
  }

  /** The backends rebuilt so far. */
  backends(): MmapBackend[] {
    return [...this.#opened.values()];
  }

  /** Closes every backend this resolver rebuilt. */
  close(): void {
    for (const b of this.#opened.values()) b.close();
    this.#opened.clear();
  }

  /** Same as {@link MmapResolver.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #backend(d: MmapSharedDescription): MmapBackend {
    if (typeof d !== 'object' || d === null) return MmapBackend.fromShared(d);
    const key = `${d.process}:${d.id}`;
    let b = this.#opened.get(key);
    if (b === undefined) {
      b = MmapBackend.fromShared(d, { fd: this.#localFd(d) });
      this.#opened.set(key, b);
    }
    return b;
  }

  #chunk(d: MmapChunkDescription): MmapChunk {
    const b = this.#backend(d?.mapping);
    const chunk = b.chunks().find((c) => c.offset === d.offset && c.size === d.size);
    if (chunk === undefined) {
      throw new MmapError('ERR_MMAP_INVALID_ARGUMENT', `the mapping has no chunk of ${d.size} bytes at ${d.offset}`, {
        address: d.offset,
        length: d.size,
      });
    }
    return chunk;
  }

  #localFd(d: MmapSharedDescription): number | undefined {
    const fds = this.#fds;
    if (fds === undefined) return undefined;
    const local = typeof d.fd === 'number' && Object.hasOwn(fds, d.fd) ? fds[d.fd] : undefined;
    if (local === undefined) {
      throw new MmapError(
        'ERR_MMAP_NOT_SHAREABLE',
        d.fd === undefined
          ? `${d.source} memory has no descriptor another process could inherit`
          : `the owner's fd ${d.fd} is not among the inherited fds`,
      );
    }
    return local;
  }
}

/**
 * The owner's descriptors that another process needs to rebuild `description`, each once, in
 * order: pass them in `spawn`'s `stdio` (from index 3) and tell the child which number each
 * became (`fds` of {@link MmapResolverOptions}).
 */
export function mmapFds(description: GuestMemoryDescription): number[] {
  const fds = new Set<number>();
  for (const b of description.backends) {
    const m = b.kind === 'mmap' ? (b as MmapSharedDescription) : b.kind === 'mmap-chunk' ? (b as MmapChunkDescription).mapping : undefined;
    if (m?.fd !== undefined) fds.add(m.fd);
  }
  return [...fds];
}
