import type { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import type { GuestMemory } from '../memory/guest-memory.js';

/** The indices of the dirty pages of `b`, read bit by bit. */
export function pagesOf(b: AtomicBitmap): number[] {
  const out: number[] = [];
  for (let p = 0; p < b.pageCount; p++) if (b.isBitDirty(p)) out.push(p);
  return out;
}

/** A KVM_GET_DIRTY_LOG buffer of `words` little-endian 64-bit words with `pages` set, built byte by byte. */
export function kvmLog(words: number, pages: number[]): Uint8Array {
  const bytes = new Uint8Array(words * 8);
  for (const p of pages) bytes[p >> 3] |= 1 << (p & 7);
  return bytes;
}

/** Guest page numbers (of `pageSize`-byte pages) that the regions' AtomicBitmaps report dirty. */
export function dirtyGuestPages(mem: GuestMemory, pageSize = 4096): number[] {
  const pages: number[] = [];
  for (const r of mem.regions()) {
    for (const { offset, length } of (r.bitmap as AtomicBitmap).dirtyRanges()) {
      for (let p = offset; p < offset + length; p += pageSize) pages.push((r.start + p) / pageSize);
    }
  }
  return pages;
}
