import { createHash } from 'node:crypto';
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

/** SHA-256 of all of `memory`'s bytes, regions in address order. */
export function checksum(memory: GuestMemory): Buffer {
  const hash = createHash('sha256');
  const CHUNK = 64 << 20;
  for (const r of memory.regions()) {
    for (let at = 0; at < r.length; at += CHUNK) {
      hash.update(memory.getSlice(GuestAddress(r.start + at), Math.min(CHUNK, r.length - at)).view('read'));
    }
  }
  return hash.digest();
}
