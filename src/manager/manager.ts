import type { GuestAddress } from '../address/address.js';
import { AddressRange } from '../address/range.js';
import { hex } from '../errors.js';
import { GuestMemory, GuestMemoryAtomic } from '../memory/guest-memory.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { MemoryBacking } from './backing.js';
import { AccessTable, type UnmappedPolicy, validatePolicy } from './dispatch.js';
import { MemoryManagerError } from './errors.js';
import { computeFlatView, diffFlatViews, type FlatSpan, type FlatViewEvent } from './flat-view.js';
import { formatMtree } from './mtree.js';
import {
  type AccessSize,
  type AliasRegionSpec,
  type BackedRegionSpec,
  type MmioRegionSpec,
  Region,
  type RegionKind,
  type RomRegionSpec,
  type Visibility,
} from './regions.js';

/** Options of a {@link MemoryManager}. */
export interface MemoryManagerOptions {
  /** What guest accesses to nothing do (default `'ignore'`: reads all ones, writes dropped). */
  unmapped?: UnmappedPolicy;
}

/**
 * Receives the changes of the flat view, one call per change with its events in order. Applying
 * them to a map of spans keyed by start reproduces {@link MemoryManager.flatView} every time.
 */
export type FlatViewListener = (events: readonly FlatViewEvent[]) => void;

/** Options of {@link MemoryManager.subscribe}. */
export interface SubscribeOptions {
  /**
   * The listener may refuse a change by throwing (a hypervisor that cannot map a span, say).
   * Such listeners hear of a change before it takes effect, in the order they subscribed, and
   * before the other listeners. When one throws, the layout stays as it was: the listeners of
   * this kind that already applied the change get the events that undo it, the others hear
   * nothing, and the change throws `ERR_CHANGE_REFUSED` with the refusal as `cause`. A
   * refusing listener must itself be left as before the change. Default false: the listener
   * hears of changes after the fact, and what it throws is `ERR_LISTENER_FAILED`.
   */
  mayRefuse?: boolean;
}

/** A recomputed layout, not yet in effect. */
interface Pending {
  readonly events: FlatViewEvent[];
  readonly view: readonly FlatSpan[];
  readonly writeSpans: readonly FlatSpan[];
  readonly table: AccessTable;
  readonly memory: GuestMemory | undefined;
}

/**
 * A guest physical address space described as prioritised regions (RAM, ROM, device memory,
 * MMIO handlers, aliases) and changed at run time (map, unmap, visibility, add, remove).
 *
 * Every change recomputes the flat view (the spans that really show), then swaps in a new
 * {@link GuestMemory} of its readable spans and a new dispatch table, then tells the listeners.
 * A change that fails its checks changes nothing.
 *
 * @example
 * const mm = new MemoryManager();
 * const ram = MemoryBacking.allocate(0x100000);
 * mm.addRam({ name: 'ram', start: GuestAddress(0), length: 0x100000, backing: ram });
 * const uart = { read: (offset: number) => 0x60 + offset, write: () => {} };
 * mm.addMmio({ name: 'uart', start: GuestAddress(0x3f8), length: 8, handler: uart, priority: 300 });
 * mm.read(GuestAddress(0x3fd), 1); // => 0x65
 * mm.write(GuestAddress(0x1000), 4, 0xc0ffee);
 * mm.memory().readU32LE(GuestAddress(0x1000)); // => 0xc0ffee
 */
export class MemoryManager {
  #regions: readonly Region[] = Object.freeze([]);
  #spans: readonly FlatSpan[] = [];
  #writeSpans: readonly FlatSpan[] = [];
  #table: AccessTable;
  readonly #policy: UnmappedPolicy;
  #holder: GuestMemoryAtomic | undefined;
  #generation = 0;
  #seq = 0;
  #batching = false;
  #notifying = false;
  readonly #listeners = new Set<FlatViewListener>();
  /** Listeners that may refuse a change (see {@link SubscribeOptions.mayRefuse}). */
  readonly #refusers = new Set<FlatViewListener>();

  constructor(options: MemoryManagerOptions = {}) {
    const policy = options.unmapped ?? 'ignore';
    validatePolicy(policy);
    this.#policy = policy;
    this.#table = new AccessTable([], [], () => [], policy);
  }

  // ---- regions ---------------------------------------------------------------------------------

  /**
   * Adds RAM (default priority 255, read-write).
   *
   * @throws {MemoryManagerError} `ERR_PRIORITY_OVERLAP` naming both regions (every `add*` method),
   *   `ERR_INVALID_REGION` for an empty region or one past its backing, `ERR_INVALID_ARG`.
   */
  addRam(spec: BackedRegionSpec): Region {
    return this.#addBacked('ram', spec, 'read-write');
  }

  /** Adds ROM: read-only to the guest; its writes go to `onWrite`, or are dropped. */
  addRom(spec: RomRegionSpec): Region {
    if (spec?.visibility === 'read-write') throw notControllable(spec.name, 'ROM cannot be made read-write');
    if (spec?.onWrite !== undefined && typeof spec.onWrite !== 'function') {
      throw new MemoryManagerError('ERR_INVALID_ARG', `onWrite of ROM ${spec.name} must be a function`);
    }
    return this.#addBacked('rom', spec, 'read-only', { onWrite: spec?.onWrite });
  }

  /** Adds device memory (default priority 0, below RAM), mapped read-write unless told otherwise. */
  addDeviceMemory(spec: BackedRegionSpec): Region {
    return this.#addBacked('device', spec, 'read-write');
  }

  /** Adds an MMIO region served by `spec.handler`. */
  addMmio(spec: MmioRegionSpec): Region {
    const h = spec?.handler;
    if (typeof h !== 'object' || h === null || typeof h.read !== 'function' || typeof h.write !== 'function') {
      throw new MemoryManagerError('ERR_INVALID_ARG', `MMIO region ${spec?.name} needs a handler with read and write`);
    }
    const sizes = spec.accessSizes ?? [1, 2, 4];
    if (!Array.isArray(sizes) || sizes.length === 0 || !sizes.every((s: number) => s === 1 || s === 2 || s === 4)) {
      throw new MemoryManagerError('ERR_ACCESS_SIZE', `the access sizes of MMIO region ${spec.name} must be some of 1, 2, 4`);
    }
    const accessSizes = [...new Set(sizes)].sort((a, b) => a - b) as AccessSize[];
    return this.#add(new Region('mmio', spec, { handler: h, accessSizes }, spec.mapped === false ? 'unmapped' : 'read-write', this.#seq++));
  }

  /**
   * Adds an alias showing `length` bytes of `spec.target` from `spec.offset` (default priority:
   * the target's). It shows what its target shows: nothing while the target is unmapped, and
   * read-only while the target is.
   */
  addAlias(spec: AliasRegionSpec): Region {
    const target = spec?.target;
    if (!(target instanceof Region) || !this.#regions.includes(target)) {
      throw new MemoryManagerError('ERR_REGION_NOT_FOUND', `the target of alias ${spec?.name} is not a region of this manager`);
    }
    if (target.kind === 'alias') {
      throw new MemoryManagerError('ERR_INVALID_REGION', `alias ${spec.name} targets alias ${target.name}: alias the region itself`);
    }
    const offset = spec.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + spec.length > target.length) {
      throw new MemoryManagerError('ERR_INVALID_REGION', `alias ${spec.name} wants [${hex(offset)}, +${hex(spec.length)}) of ${target}, which has ${hex(target.length)} bytes`, {
        address: spec.start,
        length: spec.length,
      });
    }
    const fields = { target, targetOffset: offset, priority: target.priority };
    return this.#add(new Region('alias', spec, fields, spec.mapped === false ? 'unmapped' : 'read-write', this.#seq++));
  }

  #addBacked(kind: RegionKind, spec: BackedRegionSpec, visibility: Visibility, extra: Partial<Region> = {}): Region {
    const backing = spec?.backing;
    if (!(backing instanceof MemoryBacking)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', `${kind} region ${spec?.name} needs a MemoryBacking`);
    }
    const backingOffset = spec.backingOffset ?? 0;
    if (!Number.isSafeInteger(backingOffset) || backingOffset < 0 || backingOffset + spec.length > backing.size) {
      throw new MemoryManagerError('ERR_INVALID_REGION', `${kind} region ${spec.name} wants backing bytes [${hex(backingOffset)}, +${hex(spec.length)}) of ${hex(backing.size)}`, {
        address: spec.start,
        length: spec.length,
      });
    }
    const v = spec.visibility ?? visibility;
    validateVisibility(v);
    return this.#add(new Region(kind, spec, { ...extra, backing, backingOffset }, v, this.#seq++));
  }

  /** Overlaps with regions of other priorities are resolved by priority; equal ones clash. */
  #add(region: Region): Region {
    const clash = this.#regions.find((r) => r.priority === region.priority && r.start < region.end && region.start < r.end);
    if (clash !== undefined) {
      throw new MemoryManagerError('ERR_PRIORITY_OVERLAP', `${region} overlaps ${clash}, both at priority ${region.priority}`, {
        address: Math.max(clash.start, region.start),
        length: Math.min(clash.end, region.end) - Math.max(clash.start, region.start),
      });
    }
    this.#change(() => {
      this.#regions = Object.freeze([...this.#regions, region]);
    });
    return region;
  }

  /**
   * Removes a region; what it covered shows what lies below.
   *
   * @throws {MemoryManagerError} `ERR_REGION_NOT_FOUND`, `ERR_REGION_IN_USE` while an alias shows it.
   */
  remove(region: Region): void {
    this.#check(region);
    const alias = this.#regions.find((r) => r.target === region);
    if (alias !== undefined) {
      throw new MemoryManagerError('ERR_REGION_IN_USE', `${region} is shown by alias ${alias.name}: remove the alias first`, {
        address: region.start,
        length: region.length,
      });
    }
    this.#change(() => {
      this.#regions = Object.freeze(this.#regions.filter((r) => r !== region));
    });
  }

  /** Maps a region again: RAM and device memory read-write, ROM read-only. */
  map(region: Region): void {
    this.#check(region);
    this.#setVisibility(region, region.kind === 'rom' ? 'read-only' : 'read-write');
  }

  /** Unmaps a region: lower regions show through where it was. */
  unmap(region: Region): void {
    this.#check(region);
    this.#setVisibility(region, 'unmapped');
  }

  /**
   * Sets the visibility of the RAM, ROM or device region whose range is exactly `range` (or of
   * the region given), as OpenVMM's RamVisibilityControl does: a whole region at a time.
   *
   * @throws {MemoryManagerError} `ERR_NOT_CONTROLLABLE` when no such region is there (or several
   *   are), for MMIO and aliases (use map/unmap), and for ROM made read-write.
   */
  setVisibility(target: AddressRange<GuestAddress> | Region, visibility: Visibility): void {
    validateVisibility(visibility);
    let region: Region;
    if (target instanceof Region) {
      this.#check(target);
      region = target;
    } else if (target instanceof AddressRange) {
      const found = this.#regions.filter((r) => r.backed && r.start === target.start && r.end === target.end);
      if (found.length !== 1) {
        throw notControllable(`${target}`, found.length === 0 ? 'no RAM, ROM or device region has exactly this range' : `${found.length} regions have this range: pass the region`, target);
      }
      region = found[0];
    } else {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'setVisibility takes an AddressRange or a Region');
    }
    if (!region.backed) throw notControllable(region.name, `${region.kind} regions are mapped and unmapped, not made read-only`, region.range);
    if (region.kind === 'rom' && visibility === 'read-write') throw notControllable(region.name, 'ROM cannot be made read-write', region.range);
    this.#setVisibility(region, visibility);
  }

  #setVisibility(region: Region, visibility: Visibility): void {
    if (region._visibility === visibility) return;
    this.#change(() => {
      region._visibility = visibility;
    });
  }

  #check(region: Region): void {
    if (!(region instanceof Region) || !this.#regions.includes(region)) {
      throw new MemoryManagerError('ERR_REGION_NOT_FOUND', `${String(region)} is not a region of this manager`);
    }
  }

  #change(mutate: () => void): void {
    if (this.#batching) mutate();
    else this.batch(mutate);
  }

  /**
   * Runs `changes` (calls of this manager's add, remove, map, unmap and setVisibility) as one
   * change: one recomputation, one swap of the guest memory, one call of each listener. If
   * `changes` throws, every change it made is undone and the error passes on.
   *
   * @throws {MemoryManagerError} `ERR_REENTRANT_CHANGE` from inside a listener,
   *   `ERR_CHANGE_REFUSED` when a listener that may refuse refused it (nothing changed then),
   *   `ERR_LISTENER_FAILED` after the change when a listener threw, `ERR_INVALID_ARG` when
   *   `changes` is not a function.
   * @example
   * const { manager, ram } = new GuestMemoryBuilder().x86LegacySupport(true).build({ ram: [AddressRange.fromLength(GuestAddress(0), 0x200000)] });
   * const pams = ram.filter((r) => r.name.startsWith('pam-'));
   * let calls = 0;
   * manager.subscribe(() => calls++);
   * manager.batch(() => {
   *   for (const pam of pams) manager.setVisibility(pam, 'read-only');
   * });
   * calls; // => 2
   */
  batch(changes: () => void): void {
    if (typeof changes !== 'function') throw new MemoryManagerError('ERR_INVALID_ARG', 'batch takes a function that makes the changes');
    if (this.#notifying) {
      throw new MemoryManagerError('ERR_REENTRANT_CHANGE', 'the memory layout cannot change from inside a listener');
    }
    if (this.#batching) return changes();
    const regions = this.#regions;
    const visibility = regions.map((r) => r._visibility);
    const restore = () => {
      this.#regions = regions;
      regions.forEach((r, i) => {
        r._visibility = visibility[i];
      });
    };
    let pending: Pending;
    this.#batching = true;
    try {
      changes();
      pending = this.#compute();
    } catch (err) {
      restore();
      throw err;
    } finally {
      this.#batching = false;
    }
    const refusal = this.#offer(pending);
    if (refusal !== undefined) {
      restore();
      throw refusal;
    }
    this.#commit(pending);
    this.#notify(pending.events);
  }

  /** Recomputes the flat view and what depends on it, without putting them in effect. */
  #compute(): Pending {
    const diff = diffFlatViews(this.#spans, computeFlatView(this.#regions));
    const writeSpans = computeFlatView(this.#regions, 'writes');
    const table = new AccessTable(diff.view, writeSpans, regionsOf, this.#policy);
    const memory = table.regions.length === 0 ? undefined : GuestMemory.fromRegions(table.regions);
    return { events: freeze(diff.events), view: diff.view, writeSpans, table, memory };
  }

  /** Swaps in a recomputed layout, all parts together. */
  #commit(p: Pending): void {
    this.#spans = p.view;
    this.#writeSpans = p.writeSpans;
    this.#table = p.table;
    const memory = p.memory;
    if (memory === undefined) this.#holder = undefined;
    else if (this.#holder === undefined) this.#holder = new GuestMemoryAtomic(memory);
    else this.#holder.update(() => memory);
    this.#generation++;
  }

  /**
   * Offers a change to the listeners that may refuse it. On a refusal, those that applied it
   * get the events that undo it, and the refusal comes back as an error to throw.
   */
  #offer(p: Pending): MemoryManagerError | undefined {
    if (p.events.length === 0 || this.#refusers.size === 0) return undefined;
    const applied: FlatViewListener[] = [];
    const was = this.#notifying;
    this.#notifying = true;
    try {
      for (const l of [...this.#refusers]) {
        try {
          l(p.events);
          applied.push(l);
        } catch (refusal) {
          const undo = freeze(diffFlatViews(p.view, this.#spans).events);
          const failures: unknown[] = [];
          for (const a of applied.reverse()) {
            try {
              a(undo);
            } catch (err) {
              failures.push(err);
            }
          }
          const also = failures.length === 0 ? '' : `; ${failures.length} listener(s) also failed to undo it (see cause.errors)`;
          return new MemoryManagerError('ERR_CHANGE_REFUSED', `a flat view listener refused the change, which was undone: ${String((refusal as Error)?.message ?? refusal)}${also}`, {
            cause: failures.length === 0 ? refusal : new AggregateError([refusal, ...failures]),
          });
        }
      }
    } finally {
      this.#notifying = was;
    }
    return undefined;
  }

  #notify(events: FlatViewEvent[], only?: FlatViewListener): void {
    if (events.length === 0) return;
    freeze(events);
    const failures: unknown[] = [];
    const was = this.#notifying;
    this.#notifying = true;
    try {
      for (const l of only ? [only] : [...this.#listeners]) {
        try {
          l(events);
        } catch (err) {
          failures.push(err);
        }
      }
    } finally {
      this.#notifying = was;
    }
    if (failures.length > 0) {
      throw new MemoryManagerError('ERR_LISTENER_FAILED', `${failures.length} flat view listener(s) threw; the change is complete`, {
        cause: failures.length === 1 ? failures[0] : new AggregateError(failures),
      });
    }
  }

  // ---- what the layout produces ------------------------------------------------------------------

  /** The regions, in the order they were added (a frozen array). */
  regions(): readonly Region[] {
    return this.#regions;
  }

  /**
   * The visible spans, sorted by address; with `'writes'`, where guest writes go instead (read-only
   * RAM and device memory step aside for what lies below them).
   */
  flatView(purpose: 'reads' | 'writes' = 'reads'): readonly FlatSpan[] {
    return purpose === 'writes' ? this.#writeSpans : this.#spans;
  }

  /** Counts the changes so far: a restricted view compares it to know when to rebuild. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * The current guest memory of the readable RAM, ROM and device spans: a snapshot that stays as
   * it is while the layout changes (ask again for the new one). ROM and read-only spans refuse
   * every write path with `ERR_READ_ONLY`, before any byte changes.
   *
   * @throws {MemoryManagerError} `ERR_NO_MEMORY` while no backed span is visible.
   */
  memory(): GuestMemory {
    if (this.#holder === undefined) {
      throw new MemoryManagerError('ERR_NO_MEMORY', 'no RAM, ROM or device memory is visible');
    }
    return this.#holder.memory();
  }

  /**
   * A guest memory limited to `ranges` (e.g. a device's DMA window): the readable spans inside
   * them, following the layout as it changes. A device handed it cannot reach anything else:
   * other addresses fail with `ERR_GUEST_ADDRESS_INVALID`.
   *
   * @throws {MemoryManagerError} `ERR_INVALID_ARG` unless `ranges` is an iterable of AddressRange.
   */
  restrict(ranges: Iterable<AddressRange<GuestAddress>>): RestrictedMemory {
    if (typeof (ranges as Partial<Iterable<unknown>>)?.[Symbol.iterator] !== 'function') {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'restrict takes an iterable of AddressRange objects');
    }
    return new RestrictedMemory(this, [...ranges]);
  }

  /**
   * Subscribes to flat view changes. The listener first gets the current spans as `added`
   * events. Returns the function that unsubscribes. See {@link SubscribeOptions.mayRefuse} for
   * listeners that may refuse a change.
   *
   * @throws {MemoryManagerError} `ERR_LISTENER_FAILED` when the listener throws on those first
   *   events (it stays subscribed), as every change throws when a listener did;
   *   `ERR_CHANGE_REFUSED` when a listener that may refuse throws on them (it is not
   *   subscribed then); `ERR_REENTRANT_CHANGE` from inside a listener.
   */
  subscribe(listener: FlatViewListener, options: SubscribeOptions = {}): () => void {
    if (typeof listener !== 'function') throw new MemoryManagerError('ERR_INVALID_ARG', 'a listener is a function');
    const current = freeze(this.#spans.map((span): FlatViewEvent => ({ type: 'added', span })));
    if (options?.mayRefuse === true) {
      if (this.#notifying) throw new MemoryManagerError('ERR_REENTRANT_CHANGE', 'a listener that may refuse cannot subscribe from inside a listener');
      if (current.length > 0) {
        this.#notifying = true;
        try {
          listener(current);
        } catch (refusal) {
          throw new MemoryManagerError('ERR_CHANGE_REFUSED', `the listener refused the current flat view: ${String((refusal as Error)?.message ?? refusal)}`, { cause: refusal });
        } finally {
          this.#notifying = false;
        }
      }
      this.#refusers.add(listener);
      return () => {
        this.#refusers.delete(listener);
      };
    }
    this.#listeners.add(listener);
    this.#notify(current, listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** A text dump of the regions and the flat view, like QEMU's `info mtree`. */
  mtree(): string {
    return formatMtree(this.#regions, this.#spans);
  }

  // ---- guest accesses --------------------------------------------------------------------------

  /**
   * A guest read of `size` bytes (little-endian) at `addr`: RAM directly, MMIO through its
   * handler, nothing by the unmapped policy; a read that straddles spans is split at their edges.
   *
   * @throws {MemoryManagerError} `ERR_UNMAPPED_ACCESS` (policy `'error'`), `ERR_ACCESS_SIZE`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS` for an address that is not a safe integer, or an
   *   access whose last byte lies beyond 2^53 - 1.
   */
  read(addr: GuestAddress, size: AccessSize): number {
    return this.#table.read(addr, size);
  }

  /**
   * A guest write of `size` bytes (little-endian); nothing is written when it is refused.
   *
   * @throws {MemoryManagerError} `ERR_UNMAPPED_ACCESS`, `ERR_READ_ONLY` (policy `'error'`),
   *   `ERR_ACCESS_SIZE`, `ERR_INVALID_ARG`.
   * @throws {AddressError} `ERR_INVALID_ADDRESS`, as {@link MemoryManager.read}.
   */
  write(addr: GuestAddress, size: AccessSize, value: number): void {
    this.#table.write(addr, size, value);
  }
}

/** A guest memory limited to some ranges; see {@link MemoryManager.restrict}. */
export class RestrictedMemory {
  readonly #manager: MemoryManager;
  /** The ranges the view may reach. */
  readonly ranges: readonly AddressRange<GuestAddress>[];
  #generation = -1;
  #memory: GuestMemory | undefined;

  /** @internal Made by {@link MemoryManager.restrict}. */
  constructor(manager: MemoryManager, ranges: AddressRange<GuestAddress>[]) {
    if (!ranges.every((r) => r instanceof AddressRange)) {
      throw new MemoryManagerError('ERR_INVALID_ARG', 'restrict takes AddressRange objects');
    }
    this.#manager = manager;
    this.ranges = Object.freeze(mergeRanges(ranges));
  }

  /**
   * The current restricted guest memory: a snapshot, rebuilt after a layout change.
   *
   * @throws {MemoryManagerError} `ERR_NO_MEMORY` while no readable memory lies in the ranges.
   */
  memory(): GuestMemory {
    if (this.#generation !== this.#manager.generation) {
      const regions: GuestMemoryRegion[] = [];
      for (const span of this.#manager.flatView()) {
        if (span.backingOffset === undefined) continue;
        for (const r of this.ranges) {
          const start = Math.max(r.start, span.start);
          const end = Math.min(r.end, span.end);
          if (start < end) regions.push(...regionsOf({ ...span, start: start as GuestAddress, end: end as GuestAddress, backingOffset: span.backingOffset + (start - span.start) }));
        }
      }
      this.#memory = regions.length === 0 ? undefined : GuestMemory.fromRegions(regions);
      this.#generation = this.#manager.generation;
    }
    if (this.#memory === undefined) {
      throw new MemoryManagerError('ERR_NO_MEMORY', `no readable memory lies in ${this.ranges.join(', ')}`);
    }
    return this.#memory;
  }
}

/** Freezes events and each event: every listener gets the same ones, none may change them. */
function freeze(events: FlatViewEvent[]): FlatViewEvent[] {
  Object.freeze(events);
  for (const e of events) Object.freeze(e);
  return events;
}

/** Sorted, with overlapping or touching ranges joined, so that no byte is in two. */
function mergeRanges(ranges: AddressRange<GuestAddress>[]): AddressRange<GuestAddress>[] {
  const out: AddressRange<GuestAddress>[] = [];
  for (const r of [...ranges].sort((a, b) => a.start - b.start)) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= last.end) out[out.length - 1] = new AddressRange(last.start, Math.max(last.end, r.end) as GuestAddress);
    else if (!r.isEmpty) out.push(r);
  }
  return out;
}

/** The guest memory regions of a backed span: read-only where the span is. */
function regionsOf(span: FlatSpan): GuestMemoryRegion[] {
  const backing = span.source.backing as MemoryBacking;
  return backing.regions(span.start, span.backingOffset as number, span.end - span.start, span.access === 'read-only');
}

function validateVisibility(v: unknown): asserts v is Visibility {
  if (v !== 'unmapped' && v !== 'read-only' && v !== 'read-write') {
    throw new MemoryManagerError('ERR_INVALID_ARG', `visibility must be 'unmapped', 'read-only' or 'read-write', got ${String(v)}`);
  }
}

function notControllable(what: string, why: string, range?: AddressRange): MemoryManagerError {
  return new MemoryManagerError('ERR_NOT_CONTROLLABLE', `${what} is not a controllable range: ${why}`, {
    address: range?.start,
    length: range?.length,
  });
}
