/**
 * The memory manager the KVM guest tests share: a PC-like legacy layout over mmap'd memory with
 * dirty bitmaps, recording what its devices see.
 */
import { GuestAddress } from '../../address/address.js';
import type { GuestDirtyRange } from '../../memory/guest-memory.js';
import type { MemoryBacking } from '../../manager/backing.js';
import type { UnmappedPolicy } from '../../manager/dispatch.js';
import { MemoryManager } from '../../manager/manager.js';
import type { AccessSize, Region } from '../../manager/regions.js';
import { mmapBacking } from './guests.js';

/** One access an MMIO handler saw. */
export interface Access {
  readonly op: 'read' | 'write';
  readonly offset: number;
  readonly size: AccessSize;
  readonly value: number;
}

/** The layout and what its devices recorded. */
export interface Legacy {
  readonly manager: MemoryManager;
  /** RAM [0, 0xa0000). */
  readonly low: MemoryBacking;
  /** RAM shown in the VGA window [0xa0000, 0xc0000) while mapped, above the VGA MMIO. */
  readonly vram: Region;
  /** The VGA MMIO handler's accesses (it reads 0x5a). */
  readonly vga: Access[];
  /** The device at [0xd0000, 0xd1000): its accesses (it reads 0x11). */
  readonly device: Access[];
  /** The BIOS ROM [0xf0000, 0x100000): writes the guest makes to it. */
  readonly romWrites: Access[];
  readonly rom: MemoryBacking;
  /** RAM [4 GiB, 4 GiB + 64 KiB). */
  readonly high: MemoryBacking;
}

/** Low RAM, VGA (RAM over MMIO), a device, nothing at 0xe0000, BIOS ROM, RAM above 4 GiB. */
export function legacyLayout(unmapped: UnmappedPolicy = 'ignore'): Legacy {
  const manager = new MemoryManager({ unmapped });
  const recorder = (log: Access[], reads: number) => ({
    read: (offset: number, size: AccessSize) => {
      log.push({ op: 'read', offset, size, value: reads });
      return reads;
    },
    write: (offset: number, size: AccessSize, value: number) => {
      log.push({ op: 'write', offset, size, value });
    },
  });
  const vga: Access[] = [];
  const device: Access[] = [];
  const romWrites: Access[] = [];
  const low = mmapBacking(0xa0000);
  const vramBacking = mmapBacking(0x20000);
  const rom = mmapBacking(0x10000);
  const high = mmapBacking(0x10000);
  manager.batch(() => {
    manager.addRam({ name: 'low', start: GuestAddress(0), length: 0xa0000, backing: low });
    manager.addMmio({ name: 'vga', start: GuestAddress(0xa0000), length: 0x20000, handler: recorder(vga, 0x5a) });
    manager.addMmio({ name: 'device', start: GuestAddress(0xd0000), length: 0x1000, handler: recorder(device, 0x11) });
    manager.addRom({
      name: 'bios',
      start: GuestAddress(0xf0000),
      length: 0x10000,
      backing: rom,
      onWrite: (offset, size, value) => romWrites.push({ op: 'write', offset, size, value }),
    });
    manager.addRam({ name: 'high', start: GuestAddress(2 ** 32), length: 0x10000, backing: high });
  });
  const vram = manager.addRam({ name: 'vram', start: GuestAddress(0xa0000), length: 0x20000, backing: vramBacking, priority: 10 });
  return { manager, low, vram, vga, device, romWrites, rom, high };
}

/** The page addresses of dirty ranges (4 KiB pages), ascending. */
export function pagesOf(ranges: readonly GuestDirtyRange[]): number[] {
  const out: number[] = [];
  for (const r of ranges) for (let a: number = r.start; a < r.start + r.length; a += 4096) out.push(a);
  return out;
}
