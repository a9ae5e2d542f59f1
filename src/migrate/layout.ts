import { hash } from 'node:crypto';
import { GuestAddress } from '../address/address.js';
import { hex } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { MigrateError } from './errors.js';
import { PAGE_SIZE } from './wire.js';

/** A region as the wire carries it. */
export interface WireRegion {
  readonly start: number;
  readonly length: number;
}

/** The regions of `memory`. @throws {MigrateError} `ERR_MIGRATE_MEMORY` when one is not made of whole 4 KiB pages. */
export function layoutOf(memory: GuestMemory): WireRegion[] {
  return memory.regions().map((r) => {
    if (r.start % PAGE_SIZE !== 0 || r.length % PAGE_SIZE !== 0) {
      throw new MigrateError('ERR_MIGRATE_MEMORY', `region [${hex(r.start)}, ${hex(r.start + r.length)}) is not made of whole 4 KiB pages`, {
        address: r.start,
        length: r.length,
      });
    }
    return { start: r.start, length: r.length };
  });
}

export function showLayout(regions: readonly WireRegion[]): string {
  return regions.map((r) => `[${hex(r.start)}, ${hex(r.start + r.length)})`).join(' ');
}

/** Bytes per chunk of the checksum. */
export const CHECKSUM_CHUNK = 64 << 10;

/**
 * The checksum of all memory: SHA-256 over the SHA-256 of each 64 KiB chunk, regions in address
 * order, each cut into chunks from its start (its last chunk may be shorter). Chunks are hashed
 * again only once written ({@link ChunkHashes.written}), so that a receiver hashes what it holds
 * while the rounds go on ({@link ChunkHashes.refreshSome}, in idle time), and after the pause
 * little more than what the final round wrote. (64 KiB: one-page chunks would spare the receiver
 * more but cost the sender, who hashes all of memory in the pause, 1.7 times a single hash; 64
 * KiB chunks cost it no more than one.)
 */
export class ChunkHashes {
  readonly #memory: GuestMemory;
  /** The index of each region's first chunk, by region start. */
  readonly #first = new Map<number, number>();
  /** Each chunk's guest address and length. */
  readonly #address: Float64Array;
  readonly #length: Uint32Array;
  readonly #digests: Buffer;
  readonly #stale: Uint8Array;
  /** Where {@link ChunkHashes.refreshSome} looks for stale chunks first. */
  #cursor = 0;

  constructor(memory: GuestMemory) {
    this.#memory = memory;
    let n = 0;
    for (const r of memory.regions()) {
      this.#first.set(r.start, n);
      n += Math.ceil(r.length / CHECKSUM_CHUNK);
    }
    this.#address = new Float64Array(n);
    this.#length = new Uint32Array(n);
    for (const r of memory.regions()) {
      for (let at = 0, i = this.#first.get(r.start) as number; at < r.length; at += CHECKSUM_CHUNK, i++) {
        this.#address[i] = r.start + at;
        this.#length[i] = Math.min(CHECKSUM_CHUNK, r.length - at);
      }
    }
    this.#digests = Buffer.alloc(32 * n);
    this.#stale = new Uint8Array(n).fill(1);
  }

  /** Records that `[gpa, gpa + length)`, inside the region that starts at `regionStart`, was written. */
  written(regionStart: number, gpa: number, length: number): void {
    const base = this.#first.get(regionStart) as number;
    const first = base + Math.floor((gpa - regionStart) / CHECKSUM_CHUNK);
    const last = base + Math.floor((gpa + length - 1 - regionStart) / CHECKSUM_CHUNK);
    this.#stale.fill(1, first, last + 1);
    if (first < this.#cursor) this.#cursor = first;
  }

  /** Hashes at most `limit` stale chunks; true when stale chunks are left. */
  refreshSome(limit: number): boolean {
    for (let done = 0; done < limit; done++) {
      const i = this.#stale.indexOf(1, this.#cursor);
      if (i < 0) {
        this.#cursor = this.#stale.length;
        return false;
      }
      const view = this.#memory.getSlice(GuestAddress(this.#address[i]), this.#length[i]).view('read');
      this.#digests.set(hash('sha256', view, 'buffer'), 32 * i);
      this.#stale[i] = 0;
      this.#cursor = i + 1;
    }
    return this.#stale.indexOf(1, this.#cursor) >= 0;
  }

  /** The checksum of all memory as it is now. */
  checksum(): Buffer {
    this.refreshSome(Number.POSITIVE_INFINITY);
    return hash('sha256', this.#digests, 'buffer');
  }
}
