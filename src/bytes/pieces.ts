/**
 * Small copies as single accesses (vm-memory's answer to the torn virtio index, DoS #93).
 *
 * `Uint8Array.prototype.set` on a SharedArrayBuffer goes through V8's relaxed memmove, which
 * moves single bytes unless source and destination are both word-aligned, and always for the
 * last bytes of a copy: a u16 that another worker writes meanwhile can come back as half old,
 * half new. Here every naturally aligned piece of up to 8 bytes of memory is moved with one
 * typed-array element access of its width, which is what makes it one access:
 * - ECMAScript itself makes element accesses of Uint8/Uint16/Uint32Arrays tear-free
 *   (IsNoTearConfiguration), atomics or not;
 * - for the 8-byte pieces (BigUint64Array, which the spec lets tear unless accessed with Atomics),
 *   and for native shared memory (a plain ArrayBuffer to V8, outside the spec's memory model),
 *   we rely on V8: compiled code does one machine load or store of the width, its runtime one
 *   relaxed atomic access on a shared buffer and a fixed-size move otherwise; x86-64 and arm64
 *   make aligned accesses of up to 8 bytes single-copy atomic.
 * No `Atomics` are used: single-copy atomicity is wanted, not ordering.
 */
import { type BackingViews, HOST_LITTLE_ENDIAN } from '../backend/views.js';

/** The largest copy done piece by piece whatever asked for it; longer ones run at memcpy speed. */
export const SMALL_COPY_MAX = 8;

/** Staging bytes: a copy reads all of its source before it writes any of its destination. */
const P = new Uint8Array(SMALL_COPY_MAX);
const PV = new DataView(P.buffer);
// BigUint64Array moves the 8 bytes exactly; a Float64Array could canonicalise a NaN pattern.
const P64 = new BigUint64Array(P.buffer);

/**
 * Copies `n` (at most {@link SMALL_COPY_MAX}) bytes between memory at absolute offset `abs` of
 * `v` and `buf` from index `at`, in the naturally aligned pieces of memory (largest first), each
 * with one access. Both sides are staged, so `buf` may alias the memory (memmove semantics).
 */
export function copySmall(v: BackingViews, abs: number, buf: Uint8Array, at: number, n: number, toMemory: boolean): void {
  if (toMemory) {
    for (let i = 0; i < n; i++) P[i] = buf[at + i];
    for (let i = 0; i < n; ) {
      const a = abs + i;
      const left = n - i;
      if ((a & 7) === 0 && left >= 8) {
        v.u64[a >>> 3] = P64[0]; // i is 0 here: n is at most 8
        i += 8;
      } else if ((a & 3) === 0 && left >= 4) {
        v.u32[a >>> 2] = PV.getUint32(i, HOST_LITTLE_ENDIAN);
        i += 4;
      } else if ((a & 1) === 0 && left >= 2) {
        v.u16[a >>> 1] = PV.getUint16(i, HOST_LITTLE_ENDIAN);
        i += 2;
      } else {
        v.u8[a] = P[i];
        i += 1;
      }
    }
  } else {
    for (let i = 0; i < n; ) {
      const a = abs + i;
      const left = n - i;
      if ((a & 7) === 0 && left >= 8) {
        P64[0] = v.u64[a >>> 3];
        i += 8;
      } else if ((a & 3) === 0 && left >= 4) {
        PV.setUint32(i, v.u32[a >>> 2], HOST_LITTLE_ENDIAN);
        i += 4;
      } else if ((a & 1) === 0 && left >= 2) {
        PV.setUint16(i, v.u16[a >>> 1], HOST_LITTLE_ENDIAN);
        i += 2;
      } else {
        P[i] = v.u8[a];
        i += 1;
      }
    }
    for (let i = 0; i < n; i++) buf[at + i] = P[i];
  }
}

/**
 * Copies `n` bytes of any length as {@link copySmall} does, window by window: each window ends at
 * an 8-byte boundary of memory, so no aligned piece is split between two windows. For `buf`s that
 * do not alias the memory (the scratch copy of a value or struct that straddles two regions).
 */
export function copyPieces(v: BackingViews, abs: number, buf: Uint8Array, at: number, n: number, toMemory: boolean): void {
  for (let i = 0; i < n; ) {
    const w = Math.min(n - i, SMALL_COPY_MAX - ((abs + i) & 7));
    copySmall(v, abs + i, buf, at + i, w, toMemory);
    i += w;
  }
}

/** Staging for {@link moveSmall}. */
const T = new Uint8Array(SMALL_COPY_MAX);

/**
 * Copies `n` (at most {@link SMALL_COPY_MAX}) bytes from memory to memory, each side in its own
 * naturally aligned pieces; overlapping ranges copy as memmove does.
 */
export function moveSmall(src: BackingViews, srcAbs: number, dst: BackingViews, dstAbs: number, n: number): void {
  copySmall(src, srcAbs, T, 0, n, false);
  copySmall(dst, dstAbs, T, 0, n, true);
}
