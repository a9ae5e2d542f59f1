import type { GuestAddress } from '../address/address.js';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { hex } from '../errors.js';
import { GuestMemory, type GuestDirtyRange } from '../memory/guest-memory.js';
import type { MemoryBacking } from '../manager/backing.js';
import type { FlatSpan, FlatViewEvent } from '../manager/flat-view.js';
import { MemoryManager } from '../manager/manager.js';
import { host } from '../mmap/native.js';
import { KvmError } from './errors.js';
import { Cap, errnoName, kvm, kvmCall } from './native.js';
import { dirtyTarget, type SlotPlan, SlotTable } from './slots.js';
import { KvmVcpu } from './vcpu.js';

/** Options of {@link KvmVm.create}. */
export interface KvmVmOptions {
  /**
   * Guest address of the three pages x86 KVM needs for its TSS (`KVM_SET_TSS_ADDR`), below
   * 4 GiB and outside every slot. Default 0xfffbd000, just below a 256 KiB BIOS.
   */
  tssAddress?: number;
  /** Guest address of the identity-map page (`KVM_SET_IDENTITY_MAP_ADDR`). Default 0xfffbc000. */
  identityMapAddress?: number;
}

/** One memory slot, as {@link KvmVm.slots} lists them. */
export interface KvmSlotInfo {
  /** KVM's slot number. */
  readonly id: number;
  /** Guest address of its first byte. */
  readonly guest: GuestAddress;
  /** Bytes. */
  readonly size: number;
  /** A `KVM_MEM_READONLY` slot: guest writes exit as MMIO. */
  readonly readOnly: boolean;
  /** Dirty logging on (`KVM_MEM_LOG_DIRTY_PAGES`). */
  readonly logging: boolean;
  /** The region it shows. */
  readonly name: string;
}

const API_VERSION = 12;

/**
 * A KVM virtual machine whose memory is guestmem memory: `attach` a {@link MemoryManager} (its
 * flat view's RAM and ROM spans become memory slots, and follow every layout change) or a
 * {@link GuestMemory} (one slot per region). Guest accesses to everything else (MMIO, device
 * memory, unmapped addresses, writes to ROM) exit and go to the manager.
 *
 * Only memory mapped with guestmem/mmap can be a slot; its host address stays inside guestmem.
 * A typical life: `KvmVm.create()`, `attach(manager)`, `createVcpu()`, set its registers, then
 * `run()` until the guest is done, and `close()`. `examples/kvm-tiny-guest.ts` does all of it.
 */
export class KvmVm {
  /** `KVM_GET_API_VERSION` (always 12). */
  readonly apiVersion: number;
  /** `KVM_CAP_NR_MEMSLOTS`: the most slots this VM may hold. */
  readonly maxSlots: number;
  /** `KVM_CAP_READONLY_MEM`: ROM and read-only RAM can be slots. */
  readonly readOnlyMemory: boolean;
  /** `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` is on: logs are read and cleared separately. */
  readonly manualDirtyLog: boolean;
  readonly #sys: number;
  readonly #vm: number;
  readonly #mmapSize: number;
  readonly #slots: SlotTable<unknown>;
  readonly #vcpus = new Set<KvmVcpu>();
  #manager: MemoryManager | undefined;
  #memory: GuestMemory | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  private constructor(sys: number, options: KvmVmOptions) {
    this.#sys = sys;
    try {
      this.apiVersion = kvmCall('read the KVM API version', () => kvm.kvmApiVersion(sys));
      if (this.apiVersion !== API_VERSION) {
        throw new KvmError('ERR_KVM_API_VERSION', `/dev/kvm speaks API version ${this.apiVersion}, guestmem speaks ${API_VERSION}`);
      }
      this.#vm = kvmCall('create a VM', () => kvm.kvmCreateVm(sys));
    } catch (err) {
      host.fs.closeSync(sys);
      throw err;
    }
    try {
      const vmCap = (c: number) => kvmCall('check a VM capability', () => kvm.kvmCheckExtension(this.#vm, c));
      this.maxSlots = vmCap(Cap.NR_MEMSLOTS);
      this.readOnlyMemory = vmCap(Cap.READONLY_MEM) > 0;
      this.manualDirtyLog = vmCap(Cap.MANUAL_DIRTY_LOG_PROTECT2) > 0;
      if (this.manualDirtyLog) kvmCall('enable manual dirty log protection', () => kvm.kvmEnableManualDirtyLog(this.#vm));
      const tss = options.tssAddress ?? 0xfffbd000;
      const identity = options.identityMapAddress ?? 0xfffbc000;
      kvmCall(`put the TSS at ${hex(tss)}`, () => kvm.kvmSetTssAddr(this.#vm, tss));
      kvmCall(`put the identity map at ${hex(identity)}`, () => kvm.kvmSetIdentityMapAddr(this.#vm, identity));
      this.#mmapSize = kvmCall('read the vCPU mmap size', () => kvm.kvmVcpuMmapSize(sys));
    } catch (err) {
      host.fs.closeSync(this.#vm);
      host.fs.closeSync(sys);
      throw err;
    }
    this.#slots = new SlotTable({ vmFd: this.#vm, maxSlots: this.maxSlots, readOnlyMem: this.readOnlyMemory, manualDirtyLog: this.manualDirtyLog });
  }

  /**
   * Opens /dev/kvm and creates a VM (x86: TSS and identity-map addresses set).
   *
   * @throws {KvmError} `ERR_KVM_UNAVAILABLE` when /dev/kvm cannot be opened (its `errno` says
   *   why: `ENOENT`, `EACCES`...), `ERR_KVM_API_VERSION`, `ERR_KVM_IOCTL`.
   * @throws {MmapError} `ERR_NATIVE_UNAVAILABLE` (at import) where the addon cannot load.
   */
  static create(options: KvmVmOptions = {}): KvmVm {
    let sys: number;
    try {
      sys = kvm.kvmOpen();
    } catch (e) {
      const errno = errnoName((e as { errno?: number }).errno ?? 0);
      throw new KvmError('ERR_KVM_UNAVAILABLE', `cannot open /dev/kvm: ${errno}`, { ioctl: 'open', errno, cause: e });
    }
    return new KvmVm(sys, options);
  }

  /**
   * Gives the VM its memory. A {@link MemoryManager}: one slot per RAM or ROM span of its flat
   * view (ROM and read-only RAM as read-only slots), kept in step with the layout through a
   * listener that may refuse a change KVM cannot take (the manager then undoes it); MMIO exits
   * of every vCPU go to the manager. A {@link GuestMemory}: one slot per region.
   *
   * @throws {KvmError} `ERR_KVM_ATTACHED` when memory is already attached, `ERR_KVM_NOT_MAPPABLE`
   *   naming the region that is not mmap memory, `ERR_KVM_UNALIGNED`, `ERR_KVM_CAPABILITY`,
   *   `ERR_KVM_TOO_MANY_SLOTS`, `ERR_KVM_IOCTL`; no slot is made then.
   */
  attach(memory: MemoryManager | GuestMemory): void {
    this.#checkOpen();
    if (this.#manager !== undefined || this.#memory !== undefined) {
      throw new KvmError('ERR_KVM_ATTACHED', 'the VM already has memory attached: detach it first');
    }
    if (memory instanceof MemoryManager) {
      const unsubscribe = unwrapRefusal(() => memory.subscribe((events) => this.#apply(events), { mayRefuse: true }));
      this.#manager = memory;
      this.#unsubscribe = unsubscribe;
    } else if (memory instanceof GuestMemory) {
      const plans = new Map(memory.regions().map((r) => [r, [{
        name: `region ${r.range}`,
        guest: r.start,
        size: r.length,
        backend: r.backend,
        offset: r.offset,
        readOnly: r.readOnly,
        dirty: dirtyTarget(r.bitmap, 0),
      } satisfies SlotPlan]]));
      this.#slots.change([], plans);
      this.#memory = memory;
    } else {
      throw new KvmError('ERR_KVM_INVALID_ARG', 'attach takes a MemoryManager or a GuestMemory');
    }
  }

  /** Removes every slot and lets the attached memory go (its dirty pages merged first). */
  detach(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#slots.clear();
    this.#manager = undefined;
    this.#memory = undefined;
  }

  /** The memory slots KVM holds now, by guest address. */
  slots(): KvmSlotInfo[] {
    return this.#slots.describe().map((s) => ({ ...s, guest: s.guest as GuestAddress }));
  }

  /**
   * Turns KVM's dirty logging on (or off) for every slot, now and for slots made later.
   *
   * @throws {KvmError} `ERR_KVM_NOT_TRACKED` when some slot's memory has no AtomicBitmap (a
   *   MemoryBacking made without one, a region without a bitmap).
   */
  setDirtyLogging(on: boolean): void {
    this.#checkOpen();
    this.#slots.setLogging(on);
  }

  /**
   * Merges KVM's dirty log of every slot into guestmem's bitmaps (the backing's AtomicBitmap,
   * or the region's), where guestmem's own write paths mark theirs: after this, the bitmaps
   * hold the pages written by the guest and by the VMM alike.
   */
  syncDirtyLog(): void {
    this.#checkOpen();
    this.#slots.sync();
  }

  /**
   * Takes the dirty pages, of the guest (KVM's logs) and of guestmem's write paths (devices,
   * virtio, vhost-user) together, and clears them: guest ranges, sorted. With a manager, the
   * pages of backings that no span shows now stay dirty for a later harvest.
   *
   * @throws {KvmError} `ERR_KVM_NOT_TRACKED` while dirty logging is off, `ERR_KVM_ATTACHED`
   *   without attached memory.
   */
  harvestDirty(): GuestDirtyRange[] {
    this.#checkOpen();
    if (!this.#slots.logging) throw new KvmError('ERR_KVM_NOT_TRACKED', 'dirty logging is off: call setDirtyLogging(true) first');
    this.#slots.sync();
    if (this.#memory !== undefined) return this.#memory.harvestDirty();
    if (this.#manager === undefined) throw new KvmError('ERR_KVM_ATTACHED', 'the VM has no memory attached');
    return harvestManager(this.#manager);
  }

  /**
   * Creates vCPU number `index` (default: the next one). Its MMIO exits go to the attached
   * manager, if any, at the time of the exit.
   *
   * @throws {KvmError} `ERR_KVM_IOCTL` (e.g. EEXIST for an index in use).
   */
  createVcpu(index: number = this.#vcpus.size): KvmVcpu {
    this.#checkOpen();
    const id = kvmCall(`create vCPU ${index}`, () => kvm.kvmCreateVcpu(this.#vm, index, this.#mmapSize));
    const vcpu = new KvmVcpu(id, index, () => this.#manager, true);
    this.#vcpus.add(vcpu);
    return vcpu;
  }

  /**
   * Closes the VM: every vCPU (a run in progress, in any thread, returns `{ reason: 'closed' }`),
   * every slot, and the KVM descriptors. Closing twice does nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const v of this.#vcpus) v.close();
    this.#vcpus.clear();
    try {
      this.detach();
    } finally {
      host.fs.closeSync(this.#vm);
      host.fs.closeSync(this.#sys);
    }
  }

  /** Same as {@link KvmVm.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new KvmError('ERR_KVM_CLOSED', 'the VM was closed');
  }

  /** The manager's listener: slots for the spans that came, none for those that went. */
  #apply(events: readonly FlatViewEvent[]): void {
    const remove: number[] = [];
    const add = new Map<number, SlotPlan[]>();
    for (const e of events) {
      if (e.type === 'removed') remove.push(e.span.start);
      else if (e.type === 'changed') remove.push(e.previous.start);
      if (e.type !== 'removed' && (e.span.kind === 'ram' || e.span.kind === 'rom')) add.set(e.span.start, plansOf(e.span));
    }
    this.#slots.change(remove, add as Map<unknown, SlotPlan[]>);
  }
}

/** The slots of a RAM or ROM span: one per backing chunk it covers. */
function plansOf(span: FlatSpan): SlotPlan[] {
  const backing = span.source.backing as MemoryBacking;
  const offset = span.backingOffset as number;
  const readOnly = span.access === 'read-only';
  return backing.regions(span.start, offset, span.end - span.start, readOnly || backing.chunks.some((c) => c.readOnly === true)).map((r) => ({
    name: `${span.source.kind} region ${span.source.name}`,
    guest: r.start,
    size: r.length,
    backend: r.backend,
    offset: r.offset,
    readOnly: r.readOnly,
    dirty: dirtyTarget(backing.bitmap, offset + (r.start - span.start)),
  }));
}

/** A subscription's refusal (the manager's ERR_CHANGE_REFUSED) rethrown as the KvmError it wraps. */
function unwrapRefusal<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    if ((err as { code?: string }).code === 'ERR_CHANGE_REFUSED' && cause instanceof KvmError) throw cause;
    throw err;
  }
}

/**
 * Harvests the bitmaps of the backings `manager` shows and returns their dirty pages at the
 * guest addresses of the backed spans; pages no span shows are marked again.
 */
function harvestManager(manager: MemoryManager): GuestDirtyRange[] {
  const byBacking = new Map<MemoryBacking, FlatSpan[]>();
  for (const span of manager.flatView()) {
    const backing = span.source.backing;
    if (backing === undefined) continue;
    const list = byBacking.get(backing) ?? [];
    list.push(span);
    byBacking.set(backing, list);
  }
  const out: GuestDirtyRange[] = [];
  for (const [backing, spans] of byBacking) {
    const bitmap = backing.bitmap;
    if (!(bitmap instanceof AtomicBitmap)) continue;
    const taken = bitmap.harvest();
    for (const run of taken.dirtyRanges()) {
      const runEnd = run.offset + run.length;
      let cursor = run.offset;
      const shown = spans
        .map((s) => ({ s, from: Math.max(run.offset, s.backingOffset as number), to: Math.min(runEnd, (s.backingOffset as number) + (s.end - s.start)) }))
        .filter((x) => x.from < x.to)
        .sort((a, b) => a.from - b.from);
      for (const x of shown) {
        out.push({ start: (x.s.start + (x.from - (x.s.backingOffset as number))) as GuestAddress, length: x.to - x.from });
        if (x.from > cursor) bitmap.markDirty(cursor, x.from - cursor);
        cursor = Math.max(cursor, x.to);
      }
      if (cursor < runEnd) bitmap.markDirty(cursor, runEnd - cursor);
    }
  }
  out.sort((a, b) => a.start - b.start);
  const joined: GuestDirtyRange[] = [];
  for (const r of out) {
    const last = joined[joined.length - 1];
    if (last !== undefined && last.start + last.length >= r.start) {
      joined[joined.length - 1] = { start: last.start, length: Math.max(last.length, r.start + r.length - last.start) };
    } else joined.push(r);
  }
  return joined;
}
