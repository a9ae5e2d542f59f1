import { GuestAddress } from '../../address/address.js';
import { heapBackend } from '../../backend/buffer.js';
import { AtomicBitmap } from '../../bitmap/atomic-bitmap.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { GuestMemoryRegion } from '../../region/region.js';
import { VirtioError, type VirtioErrorCode } from '../errors.js';
import { VirtqueueDriver } from '../driver.js';
import { SplitQueue } from '../queue.js';

export const G = GuestAddress;

/** Three 64 KiB regions with holes between them, as the reference's tests use. */
export function defaultMemory(): GuestMemory {
  return GuestMemory.fromRanges([
    [G(0), 0x10000],
    [G(0x20000), 0x10000],
    [G(0x40000), 0x10000],
  ]);
}

/** Two adjacent 64 KiB regions, dirty-tracked: [0, 0x10000) and [0x10000, 0x20000). */
export function trackedMemory(): { mem: GuestMemory; bitmaps: AtomicBitmap[] } {
  const bitmaps = [new AtomicBitmap(0x10000), new AtomicBitmap(0x10000)];
  const mem = GuestMemory.fromRegions(
    bitmaps.map((bitmap, i) => new GuestMemoryRegion(G(i * 0x10000), heapBackend(0x10000), { bitmap })),
  );
  return { mem, bitmaps };
}

/** A driver with its rings at 0 and data in the second region, and the device's queue. */
export function setup(
  size = 16,
  options: { eventIdx?: boolean; mem?: GuestMemory; dataBase?: number; dataSize?: number } = {},
): { mem: GuestMemory; drv: VirtqueueDriver; q: SplitQueue } {
  const mem = options.mem ?? defaultMemory();
  const drv = new VirtqueueDriver(mem, {
    size,
    dataBase: G(options.dataBase ?? 0x20000),
    dataSize: options.dataSize ?? 0x10000,
    eventIdx: options.eventIdx ?? false,
  });
  return { mem, drv, q: new SplitQueue(mem, drv.queueConfig()) };
}

/** An assert.throws matcher: a VirtioError with `code` (and the given properties). */
export function virtioError(code: VirtioErrorCode, props: Record<string, unknown> = {}): (err: unknown) => boolean {
  return (err) => {
    if (!(err instanceof VirtioError)) throw new Error(`expected a VirtioError ${code}, got ${String(err)}`);
    if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`);
    for (const [k, v] of Object.entries(props)) {
      if ((err as unknown as Record<string, unknown>)[k] !== v) {
        throw new Error(`expected ${k} = ${String(v)}, got ${String((err as unknown as Record<string, unknown>)[k])}`);
      }
    }
    return true;
  };
}
