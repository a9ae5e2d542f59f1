/**
 * The two sides of a sharing test: one side writes u32 values at guest addresses, the other
 * (a worker or a child process, over the rebuilt memory) reports what it sees there and
 * whether those pages are dirty in its bitmaps, then writes values of its own.
 */
import { GuestAddress } from '../address/address.js';
import type { GuestMemory } from '../memory/guest-memory.js';

/** What the other side is asked to do. */
export interface ExchangePlan {
  /** Guest addresses to read a u32 at (and whose dirty bit to report). */
  read: number[];
  /** `[address, value]`: u32 writes to make, through guest memory, so they are marked dirty. */
  write: [number, number][];
}

/** What it reports. */
export interface ExchangeReport {
  seen: number[];
  dirty: boolean[];
  /** `[start, length, readOnly]` of each region. */
  layout: [number, number, boolean][];
}

/** True when the page holding `addr` is marked dirty in its region's bitmap. */
export function isDirty(mem: GuestMemory, addr: number): boolean {
  const r = mem.findRegion(GuestAddress(addr));
  if (r === undefined) throw new RangeError(`no region at ${addr}`);
  return r.bitmap.dirtyAt(addr - r.start);
}

/** Runs `plan` on `mem`: the other side's half of the exchange. */
export function exchange(mem: GuestMemory, plan: ExchangePlan): ExchangeReport {
  const seen = plan.read.map((a) => mem.readU32LE(GuestAddress(a)));
  const dirty = plan.read.map((a) => isDirty(mem, a));
  for (const [a, v] of plan.write) mem.writeU32LE(GuestAddress(a), v);
  return { seen, dirty, layout: layoutOf(mem) };
}

/** `[start, length, readOnly]` of each region of `mem`. */
export function layoutOf(mem: GuestMemory): [number, number, boolean][] {
  return mem.regions().map((r) => [r.start, r.length, r.readOnly]);
}
