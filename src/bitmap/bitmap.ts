/**
 * The dirty-tracking contract (vm-memory's `Bitmap`): one per region, told about every write.
 *
 * Offsets are bytes from the start of whatever the bitmap covers (a region, or a slice of one).
 */
export interface Bitmap {
  /** Records that `[offset, offset + length)` was written. A zero length marks nothing. */
  markDirty(offset: number, length: number): void;
  /** True when the byte at `offset` lies in a page marked dirty. */
  dirtyAt(offset: number): boolean;
  /** A bitmap that sees (and sets) the same bits, with offsets counted from `offset`. */
  sliceAt(offset: number): Bitmap;
}

/**
 * The bitmap of untracked memory: marks nothing, reports nothing dirty.
 * Shared by all untracked regions so that their write paths stay monomorphic.
 */
export class NoopBitmap implements Bitmap {
  markDirty(_offset: number, _length: number): void {}
  dirtyAt(_offset: number): boolean {
    return false;
  }
  sliceAt(_offset: number): Bitmap {
    return this;
  }
}

/** The one no-op bitmap. */
export const NO_BITMAP: Bitmap = new NoopBitmap();

/**
 * @internal Dirty marks of one bitmap that the value-write paths set with a plain byte store:
 * `bytes[offset >>> shift] = 1`, no read-modify-write and no call. Every reader of the bitmap
 * folds them into its bits first. `bytes` may be replaced (the bitmap grew); holders keep this
 * object.
 */
export class PageMarks {
  declare bytes: Uint8Array;
  /** `log2(pageSize)`. */
  declare readonly shift: number;
  /** A value of at most this many bytes touches at most two pages: its first and its last. */
  declare readonly pageSize: number;

  constructor(bytes: Uint8Array, shift: number) {
    this.bytes = bytes;
    this.shift = shift;
    this.pageSize = 2 ** shift;
  }
}
