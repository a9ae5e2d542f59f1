/**
 * KVM memory slots: what guest memory each slot shows, where its host memory lives, and how its
 * dirty log reaches guestmem's bitmaps. A {@link SlotTable} changes KVM's slots as a whole set of
 * removals and additions, checked before anything changes and undone if the kernel refuses part.
 */
import type { MemoryBackend } from '../backend/backend.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { hex } from '../errors.js';
import { MmapBackend, MmapChunk } from '../mmap/backend.js';
import { type NativeHandle, native } from '../mmap/native.js';
import { KvmError } from './errors.js';
import { kvm, kvmCall, MemFlags } from './native.js';

/** KVM's dirty log counts 4 KiB pages on x86. */
export const KVM_PAGE = 4096;

/** Where a slot's dirty pages go: `bitmap`'s pages from `firstPage` on. */
export interface DirtyTarget {
  readonly bitmap: AtomicBitmap;
  readonly firstPage: number;
}

/** One slot to make: `size` bytes at guest address `guest`, from `backend` at `offset`. */
export interface SlotPlan {
  /** The region (or span) it shows, for errors. */
  readonly name: string;
  readonly guest: number;
  readonly size: number;
  readonly backend: MemoryBackend;
  readonly offset: number;
  readonly readOnly: boolean;
  /** Where its dirty pages are merged; undefined for untracked memory. */
  readonly dirty: DirtyTarget | undefined;
}

/** A slot KVM holds. */
interface Slot {
  readonly id: number;
  readonly plan: SlotPlan;
  /** Keeps the mapping alive while KVM may touch it. */
  readonly handle: NativeHandle;
  readonly memory: ArrayBuffer;
  readonly hostOffset: number;
  logging: boolean;
}

/** The mmap backend behind a chunk or backend; undefined for memory KVM cannot map. */
function mmapOf(backend: MemoryBackend): MmapBackend | undefined {
  if (backend instanceof MmapChunk) return backend.backend;
  if (backend instanceof MmapBackend) return backend;
  return undefined;
}

/**
 * Checks that `plan` can be a slot: mmap memory, page-aligned in the guest and in the mapping.
 *
 * @throws {KvmError} `ERR_KVM_NOT_MAPPABLE`, `ERR_KVM_UNALIGNED`.
 */
export function checkPlan(plan: SlotPlan): void {
  if (mmapOf(plan.backend) === undefined) {
    throw new KvmError(
      'ERR_KVM_NOT_MAPPABLE',
      `${plan.name} is ${plan.backend.kind} memory, which KVM cannot map into a guest: back it with guestmem/mmap`,
      { region: plan.name, address: plan.guest, length: plan.size },
    );
  }
  if (plan.guest % KVM_PAGE !== 0 || plan.size % KVM_PAGE !== 0 || plan.offset % KVM_PAGE !== 0) {
    throw new KvmError(
      'ERR_KVM_UNALIGNED',
      `${plan.name} shows [${hex(plan.guest)}, +${hex(plan.size)}) from backend offset ${hex(plan.offset)}: a KVM slot needs all three on ${KVM_PAGE}-byte pages`,
      { region: plan.name, address: plan.guest, length: plan.size },
    );
  }
}

/** The VM-wide facts a slot table needs. */
export interface SlotLimits {
  readonly vmFd: number;
  readonly maxSlots: number;
  readonly readOnlyMem: boolean;
  readonly manualDirtyLog: boolean;
}

/**
 * The memory slots of one VM, keyed by a caller's key (a flat view span's start, a region).
 */
export class SlotTable<K> {
  readonly #limits: SlotLimits;
  readonly #slots = new Map<K, Slot[]>();
  readonly #freeIds: number[] = [];
  #nextId = 0;
  #logging = false;
  /** Scratch logs, reused between harvests: one per slot id. */
  readonly #logs = new Map<number, BigUint64Array>();

  constructor(limits: SlotLimits) {
    this.#limits = limits;
  }

  /** Slots KVM holds now. */
  get count(): number {
    let n = 0;
    for (const s of this.#slots.values()) n += s.length;
    return n;
  }

  /** Whether dirty logging is on for every slot. */
  get logging(): boolean {
    return this.#logging;
  }

  /** The slots' guest ranges and flags, by address (for tests and dumps). */
  describe(): { id: number; guest: number; size: number; readOnly: boolean; logging: boolean; name: string }[] {
    return [...this.#slots.values()]
      .flat()
      .map((s) => ({ id: s.id, guest: s.plan.guest, size: s.plan.size, readOnly: s.plan.readOnly, logging: s.logging, name: s.plan.name }))
      .sort((a, b) => a.guest - b.guest);
  }

  /**
   * Removes the slots of `remove` and makes those of `add`, as one change: everything is checked
   * first (mappable, aligned, read-only slots offered, the slot limit), removed slots' dirty
   * pages are merged before they go, and a kernel refusal part-way undoes what was done.
   *
   * @throws {KvmError} `ERR_KVM_NOT_MAPPABLE`, `ERR_KVM_UNALIGNED`, `ERR_KVM_CAPABILITY`,
   *   `ERR_KVM_TOO_MANY_SLOTS`, `ERR_KVM_IOCTL`; nothing changed then.
   */
  change(remove: readonly K[], add: ReadonlyMap<K, readonly SlotPlan[]>): void {
    for (const plans of add.values()) {
      for (const plan of plans) {
        checkPlan(plan);
        if (plan.readOnly && !this.#limits.readOnlyMem) {
          throw new KvmError('ERR_KVM_CAPABILITY', `${plan.name} needs a read-only slot, and this kernel lacks KVM_CAP_READONLY_MEM`, { region: plan.name });
        }
        if (this.#logging && plan.dirty === undefined) throw notTracked(plan.name);
      }
    }
    const removing = remove.filter((k) => this.#slots.has(k));
    const leaving = removing.reduce((n, k) => n + (this.#slots.get(k) as Slot[]).length, 0);
    const coming = [...add.values()].reduce((n, p) => n + p.length, 0);
    const after = this.count - leaving + coming;
    if (after > this.#limits.maxSlots) {
      throw new KvmError('ERR_KVM_TOO_MANY_SLOTS', `the layout needs ${after} memory slots; this kernel allows ${this.#limits.maxSlots} (KVM_CAP_NR_MEMSLOTS)`, {
        expected: this.#limits.maxSlots,
        length: after,
      });
    }
    const removed: [K, Slot[]][] = [];
    const added: K[] = [];
    try {
      for (const k of removing) {
        const slots = this.#slots.get(k) as Slot[];
        for (const s of slots) this.#sync(s);
        this.#slots.delete(k);
        removed.push([k, slots]);
        for (const s of slots) this.#drop(s);
      }
      for (const [k, plans] of add) {
        const slots: Slot[] = [];
        this.#slots.set(k, slots);
        added.push(k);
        for (const plan of plans) slots.push(this.#make(plan, this.#takeId()));
      }
    } catch (err) {
      for (const k of added.reverse()) {
        for (const s of this.#slots.get(k) as Slot[]) this.#drop(s);
        this.#slots.delete(k);
      }
      // The same ids again: nothing can have taken them meanwhile.
      for (const [k, slots] of removed.reverse()) this.#slots.set(k, slots.map((s) => this.#make(s.plan, this.#takeId(s.id))));
      throw err;
    }
  }

  /** Removes every slot (merging dirty pages first). */
  clear(): void {
    this.change([...this.#slots.keys()], new Map());
  }

  /**
   * Turns dirty logging on or off for every slot (and every slot made later). Turning it on
   * starts clean logs; turning it off merges what the logs hold first.
   *
   * @throws {KvmError} `ERR_KVM_NOT_TRACKED` (on) when a slot's memory has no AtomicBitmap.
   */
  setLogging(on: boolean): void {
    if (on === this.#logging) return;
    const all = [...this.#slots.values()].flat();
    if (on) for (const s of all) if (s.plan.dirty === undefined) throw notTracked(s.plan.name);
    if (!on) for (const s of all) this.#sync(s);
    this.#logging = on;
    const done: Slot[] = [];
    try {
      for (const s of all) {
        this.#set(s, on);
        done.push(s);
      }
    } catch (err) {
      this.#logging = !on;
      for (const s of done) this.#set(s, !on);
      throw err;
    }
  }

  /** Merges every slot's dirty log into its bitmap (and clears the log). */
  sync(): void {
    for (const slots of this.#slots.values()) for (const s of slots) this.#sync(s);
  }

  #takeId(want?: number): number {
    if (want !== undefined) {
      const i = this.#freeIds.indexOf(want);
      if (i >= 0) this.#freeIds.splice(i, 1);
      return want;
    }
    if (this.#freeIds.length > 0) {
      // The lowest free id: reuse keeps ids below the limit.
      this.#freeIds.sort((a, b) => a - b);
      return this.#freeIds.shift() as number;
    }
    return this.#nextId++;
  }

  #make(plan: SlotPlan, id: number): Slot {
    const mmap = mmapOf(plan.backend) as MmapBackend;
    let handle: NativeHandle | undefined;
    try {
      handle = kvmCall(`keep the memory of ${plan.name} mapped`, () => native.acquire(mmap.share().id), { region: plan.name });
      // The chunk's buffer names the memory: its address never leaves the addon.
      const memory = plan.backend.views().buffer as ArrayBuffer;
      const slot: Slot = { id, plan, handle, memory, hostOffset: plan.offset, logging: this.#logging };
      this.#set(slot, this.#logging);
      return slot;
    } catch (err) {
      this.#freeIds.push(id);
      if (handle !== undefined) native.release(handle);
      throw err;
    }
  }

  /** Makes (or remakes, with new flags) slot `s` in KVM. */
  #set(s: Slot, logging: boolean): void {
    const flags = (s.plan.readOnly ? MemFlags.READONLY : 0) | (logging ? MemFlags.LOG_DIRTY_PAGES : 0);
    kvmCall(
      `map ${s.plan.name} [${hex(s.plan.guest)}, +${hex(s.plan.size)}) as memory slot ${s.id}`,
      () => kvm.kvmSetMemoryRegion(this.#limits.vmFd, s.id, flags, s.plan.guest, s.plan.size, s.memory, s.hostOffset),
      { region: s.plan.name, address: s.plan.guest, length: s.plan.size },
    );
    s.logging = logging;
  }

  /** Deletes slot `s` from KVM and lets its memory go. */
  #drop(s: Slot): void {
    kvmCall(`remove memory slot ${s.id} (${s.plan.name})`, () => kvm.kvmSetMemoryRegion(this.#limits.vmFd, s.id, 0, s.plan.guest, 0, null, 0), {
      region: s.plan.name,
    });
    native.release(s.handle);
    this.#freeIds.push(s.id);
    this.#logs.delete(s.id);
  }

  /** Merges slot `s`'s dirty log into its bitmap; the kernel's log is cleared. */
  #sync(s: Slot): void {
    if (!s.logging || s.plan.dirty === undefined) return;
    const pages = s.plan.size / KVM_PAGE;
    let log = this.#logs.get(s.id);
    if (log === undefined) {
      log = new BigUint64Array(Math.ceil(pages / 64));
      this.#logs.set(s.id, log);
    }
    const vm = this.#limits.vmFd;
    const dirty = kvmCall('read the dirty log of a memory slot', () => kvm.kvmGetDirtyLog(vm, s.id, log));
    if (dirty === 0) return; // nothing to clear or merge: the common case between rounds
    if (this.#limits.manualDirtyLog) {
      kvmCall('clear the dirty log of a memory slot', () => kvm.kvmClearDirtyLog(vm, s.id, 0, pages, log));
    }
    mergeShifted(s.plan.dirty, log, pages);
  }
}

function notTracked(name: string): KvmError {
  return new KvmError('ERR_KVM_NOT_TRACKED', `${name} has no AtomicBitmap (with ${KVM_PAGE}-byte pages) to merge KVM's dirty log into`, { region: name });
}

/** ORs `log` (pages of a slot) into `target.bitmap` from page `target.firstPage`. */
export function mergeShifted(target: DirtyTarget, log: BigUint64Array, pages: number): void {
  const src = new Uint32Array(log.buffer, log.byteOffset, log.length * 2);
  const shift = target.firstPage;
  if (shift === 0) {
    target.bitmap.merge(log);
    return;
  }
  // A log of bitmap pages [0, shift + pages), zero below `shift`: what merge takes.
  const out = new Uint32Array(2 * Math.ceil((shift + pages) / 64));
  const word = Math.floor(shift / 32);
  const bit = shift % 32;
  let any = false;
  for (let j = 0; j < src.length; j++) {
    const w = src[j];
    if (w === 0) continue;
    any = true;
    if (bit === 0) out[word + j] |= w;
    else {
      out[word + j] |= w << bit;
      if (word + j + 1 < out.length) out[word + j + 1] |= w >>> (32 - bit);
    }
  }
  if (any) target.bitmap.merge(new Uint8Array(out.buffer));
}

/** The dirty target of memory tracked by `bitmap` from byte `offset`, if it can be one. */
export function dirtyTarget(bitmap: unknown, offset: number): DirtyTarget | undefined {
  if (!(bitmap instanceof AtomicBitmap) || bitmap.pageSize !== KVM_PAGE || offset % KVM_PAGE !== 0) return undefined;
  return { bitmap, firstPage: offset / KVM_PAGE };
}
