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
 * again only once written ({@link ChunkHashes.written}), so that a receiver hashes during the
 * rounds what it already holds, and after the pause only the chunks the final round wrote. (64
 * KiB: one-page chunks would spare the receiver more but cost the sender, who must hash all of
 * memory in the pause, 1.7 times a single hash; 64 KiB chunks cost it no more than one.)
 */
export class ChunkHashes {
  readonly #memory: GuestMemory;
  /** The index of each region's first chunk, by region start. */
  readonly #first = new Map<number, number>();
  readonly #digests: Buffer;
  readonly #stale: Uint8Array;

  constructor(memory: GuestMemory) {
    this.#memory = memory;
    let n = 0;
    for (const r of memory.regions()) {
      this.#first.set(r.start, n);
      n += Math.ceil(r.length / CHECKSUM_CHUNK);
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
  }

  /** Hashes the chunks written since they were last hashed. */
  refresh(): void {
    const STEP = 1 << 20; // one view per MiB
    for (const r of this.#memory.regions()) {
      const base = this.#first.get(r.start) as number;
      for (let at = 0; at < r.length; at += STEP) {
        const i0 = base + at / CHECKSUM_CHUNK;
        const bytes = Math.min(STEP, r.length - at);
        const n = Math.ceil(bytes / CHECKSUM_CHUNK);
        const next = this.#stale.indexOf(1, i0);
        if (next < 0) return; // nothing stale from here on
        if (next >= i0 + n) continue;
        const view = this.#memory.getSlice(GuestAddress(r.start + at), bytes).view('read');
        for (let c = next - i0; c < n; c++) {
          if (this.#stale[i0 + c] === 0) continue;
          const chunk = view.subarray(c * CHECKSUM_CHUNK, Math.min(bytes, (c + 1) * CHECKSUM_CHUNK));
          this.#digests.set(hash('sha256', chunk, 'buffer'), 32 * (i0 + c));
          this.#stale[i0 + c] = 0;
        }
      }
    }
  }

  /** The checksum of all memory as it is now. */
  checksum(): Buffer {
    this.refresh();
    return hash('sha256', this.#digests, 'buffer');
  }
}
