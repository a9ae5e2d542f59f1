/**
 * The device side of a split virtqueue (virtio 1.2, section 2.7): available ring in, used ring
 * out, notification suppression both ways.
 */
import { type GuestAddress, isIndex } from '../address/address.js';
import { hex } from '../errors.js';
import { GuestMemory } from '../memory/guest-memory.js';
import type { GuestMemoryRegion } from '../region/region.js';
import { DESCRIPTOR_SIZE, DescriptorChain } from './chain.js';
import { VirtioError } from './errors.js';

/** The largest split queue size. */
export const MAX_QUEUE_SIZE = 32768;
/** avail.flags: the driver asks not to be interrupted (ignored under EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device asks not to be notified (ignored under EVENT_IDX). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** Feature bit: descriptors may point to indirect tables. */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
/** Feature bit: used_event / avail_event replace the NO_INTERRUPT / NO_NOTIFY flags. */
export const VIRTIO_RING_F_EVENT_IDX = 29;
/** Feature bit: a virtio 1.x (non-legacy) device. */
export const VIRTIO_F_VERSION_1 = 32;

/** Where a split queue lives and where it stands: what a transport (or vhost-user) collects. */
export interface SplitQueueConfig {
  /** Number of descriptors: a power of two, 1 to 32768. */
  size: number;
  /** Guest address of the descriptor table (16-byte aligned, 16 * size bytes). */
  descTable: GuestAddress;
  /** Guest address of the available ring (2-byte aligned, 6 + 2 * size bytes). */
  availRing: GuestAddress;
  /** Guest address of the used ring (4-byte aligned, 6 + 8 * size bytes). */
  usedRing: GuestAddress;
  /** VIRTIO_F_EVENT_IDX was negotiated. */
  eventIdx?: boolean;
  /** The next available ring index to read (vhost-user SET_VRING_BASE; default 0). */
  lastAvailIdx?: number;
  /** The next used ring index to write (default: the used ring's `idx` now in memory). */
  usedIdx?: number;
}

/**
 * A split virtqueue as the device sees it, over a {@link GuestMemory}.
 *
 * Building one is the transport's "queue ready": the size, alignment and placement of the three
 * rings are checked then (and again on {@link setMemory}), so later accesses to them cannot
 * fail. Everything read from the rings is driver input and is checked: the available index may
 * claim at most `size` new entries, heads and chains are checked by {@link DescriptorChain}.
 *
 * Ordering against a driver running at the same time (another thread or process sharing the
 * memory): stores keep program order (x86 is TSO, and V8 does not reorder typed-array stores),
 * so the driver sees used entries before the index that publishes them. Where a store must be
 * visible before a following load (the used index before used_event / flags are read, avail_event
 * before the available index is read again) a full fence separates them, as the spec's mb().
 *
 * @example
 * const mem = GuestMemory.fromRanges([[GuestAddress(0), 0x20000]]);
 * const driver = new VirtqueueDriver(mem, { size: 16, dataBase: GuestAddress(0x10000), dataSize: 0x10000 });
 * const q = new SplitQueue(mem, driver.queueConfig());
 * driver.post([Uint8Array.of(1, 2, 3)], [8]);
 * for (let chain = q.pop(); chain !== undefined; chain = q.pop()) {
 *   const { reader, writer } = splitChain(chain);
 *   q.addUsed(chain.head, writer.writeAt(0, Uint8Array.of(reader.length)));
 * }
 * q.needsNotification(); // => true
 * driver.used(); // => [{ id: 0, len: 1 }]
 */
export class SplitQueue {
  /** Number of descriptors. */
  readonly size: number;
  /** Guest address of the descriptor table. */
  readonly descTable: GuestAddress;
  /** Guest address of the available ring. */
  readonly availRing: GuestAddress;
  /** Guest address of the used ring. */
  readonly usedRing: GuestAddress;
  /** VIRTIO_F_EVENT_IDX is in use. */
  readonly eventIdx: boolean;
  #memory: GuestMemory;
  #lastAvail: number;
  #nextUsed: number;
  /** Used entries written but not yet published. */
  #unpublished = 0;
  /** Used entries published since the last {@link needsNotification}. */
  #unsignalled = 0;
  /** The used index when {@link needsNotification} last ran. */
  #signalledUsed: number;

  /**
   * @throws {VirtioError} `ERR_VIRTQ_SIZE`, `ERR_VIRTQ_ALIGNMENT`, `ERR_VIRTQ_RING_ADDRESS` (also
   *   for a used ring in read-only memory),
   *   `ERR_INVALID_ARG` (an address that is not a safe integer, an index that is not a u16).
   */
  constructor(memory: GuestMemory, config: SplitQueueConfig) {
    const { size, descTable, availRing, usedRing } = config;
    if (!(isIndex(size) && size >= 1 && size <= MAX_QUEUE_SIZE && (size & (size - 1)) === 0)) {
      throw new VirtioError('ERR_VIRTQ_SIZE', `queue size must be a power of two from 1 to 32768, got ${size}`);
    }
    this.size = size;
    this.descTable = checkRingAddress(descTable, 16, 'descriptor table');
    this.availRing = checkRingAddress(availRing, 2, 'available ring');
    this.usedRing = checkRingAddress(usedRing, 4, 'used ring');
    this.eventIdx = config.eventIdx === true;
    this.#memory = this.#checkPlacement(memory);
    this.#lastAvail = checkU16(config.lastAvailIdx ?? 0, 'lastAvailIdx');
    this.#nextUsed = checkU16(config.usedIdx ?? memory.readU16LE((usedRing + 2) as GuestAddress), 'usedIdx');
    this.#signalledUsed = this.#nextUsed;
  }

  /** The guest memory the rings are read from. */
  get memory(): GuestMemory {
    return this.#memory;
  }

  /**
   * Uses `memory` from now on (a hot-plug, or a new vhost-user memory table). The rings must lie
   * in it; otherwise this throws and the queue keeps its memory. Chains popped before keep the
   * memory they were popped from.
   *
   * @throws {VirtioError} `ERR_VIRTQ_RING_ADDRESS`, `ERR_INVALID_ARG`
   */
  setMemory(memory: GuestMemory): void {
    this.#memory = this.#checkPlacement(memory);
  }

  /** The next available ring index the device will read: vhost-user's GET_VRING_BASE. */
  get lastAvailIdx(): number {
    return this.#lastAvail;
  }

  /** The next used ring index the device will write. */
  get usedIdx(): number {
    return this.#nextUsed;
  }

  /**
   * How many chains the driver made available that were not popped yet.
   *
   * @throws {VirtioError} `ERR_VIRTQ_AVAIL_COUNT` when the driver's index claims more than `size`.
   */
  availableCount(): number {
    const availIdx = this.#memory.readU16LE((this.availRing + 2) as GuestAddress);
    const n = (availIdx - this.#lastAvail) & 0xffff;
    if (n > this.size) {
      throw new VirtioError(
        'ERR_VIRTQ_AVAIL_COUNT',
        `the available index ${availIdx} is ${n} entries ahead of ${this.#lastAvail}, more than the queue size ${this.size}`,
        { index: availIdx },
      );
    }
    return n;
  }

  /**
   * The next available chain, or `undefined` when there is none. Under EVENT_IDX it also asks the
   * driver to notify once it makes the entry after this one available (avail_event).
   *
   * @throws {VirtioError} `ERR_VIRTQ_AVAIL_COUNT`, or `ERR_DESC_INDEX` for a head outside the
   *   table (the entry counts as consumed: report it used, or reset the device).
   */
  pop(): DescriptorChain | undefined {
    if (this.availableCount() === 0) return undefined;
    const mem = this.#memory;
    const slot = this.#lastAvail & (this.size - 1);
    const head = mem.readU16LE((this.availRing + 4 + 2 * slot) as GuestAddress);
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    if (this.eventIdx) mem.writeU16LE(this.#availEventAddr(), this.#lastAvail);
    return new DescriptorChain(mem, this.descTable, this.size, head);
  }

  /** Gives back the last popped chain: the next {@link pop} returns it again. */
  undoPop(): void {
    this.#lastAvail = (this.#lastAvail - 1) & 0xffff;
  }

  /**
   * Writes a used entry without publishing it: a batch of these becomes visible to the driver at
   * once with {@link publishUsed}.
   *
   * @param head - The chain's head index.
   * @param len - Bytes the device wrote into the chain's writable buffers.
   * @throws {VirtioError} `ERR_VIRTQ_USED_HEAD`, `ERR_INVALID_ARG` for a `len` that is not a u32.
   */
  pushUsed(head: number, len: number): void {
    if (!(Number.isInteger(head) && head >= 0 && head < this.size)) {
      throw new VirtioError('ERR_VIRTQ_USED_HEAD', `used head ${head} is outside the queue of ${this.size}`, { index: head });
    }
    if (!(Number.isInteger(len) && len >= 0 && len <= 0xffff_ffff)) {
      throw new VirtioError('ERR_INVALID_ARG', `used length must be a u32, got ${len}`);
    }
    const mem = this.#memory;
    const at = this.usedRing + 4 + 8 * (this.#nextUsed & (this.size - 1));
    mem.writeU32LE(at as GuestAddress, head);
    mem.writeU32LE((at + 4) as GuestAddress, len);
    this.#nextUsed = (this.#nextUsed + 1) & 0xffff;
    this.#unpublished++;
  }

  /** Makes the used entries written so far visible to the driver (stores used.idx). */
  publishUsed(): void {
    this.#memory.writeU16LE((this.usedRing + 2) as GuestAddress, this.#nextUsed);
    this.#unsignalled += this.#unpublished;
    this.#unpublished = 0;
  }

  /** {@link pushUsed} and {@link publishUsed} in one. */
  addUsed(head: number, len: number): void {
    this.pushUsed(head, len);
    this.publishUsed();
  }

  /**
   * Whether the driver wants an interrupt for the used entries published since the last call:
   * under EVENT_IDX when the used index passed used_event (correct across 16-bit wrap),
   * otherwise unless the driver set NO_INTERRUPT. False when nothing was published.
   */
  needsNotification(): boolean {
    const added = this.#unsignalled;
    const old = this.#signalledUsed;
    const now = (this.#nextUsed - this.#unpublished) & 0xffff;
    this.#unsignalled = 0;
    this.#signalledUsed = now;
    if (added === 0) return false;
    fence();
    const mem = this.#memory;
    if (!this.eventIdx) return (mem.readU16LE(this.availRing) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    if (added >= 0x10000) return true;
    const usedEvent = mem.readU16LE((this.availRing + 4 + 2 * this.size) as GuestAddress);
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  /**
   * Asks the driver to notify on new available entries (clears NO_NOTIFY, or under EVENT_IDX sets
   * avail_event to the next index). Returns true when entries are already waiting: process them
   * before sleeping, or a notification may have been missed.
   *
   * @throws {VirtioError} `ERR_VIRTQ_AVAIL_COUNT`, before the flags or avail_event change
   */
  enableNotification(): boolean {
    // A driver index that claims too much is refused before the flags change: nothing half-applied.
    this.availableCount();
    const mem = this.#memory;
    if (this.eventIdx) mem.writeU16LE(this.#availEventAddr(), this.#lastAvail);
    else mem.writeU16LE(this.usedRing, mem.readU16LE(this.usedRing) & ~VIRTQ_USED_F_NO_NOTIFY);
    fence();
    return this.availableCount() > 0;
  }

  /** Asks the driver not to notify (sets NO_NOTIFY; under EVENT_IDX avail_event is left alone). */
  disableNotification(): void {
    if (this.eventIdx) return;
    const mem = this.#memory;
    mem.writeU16LE(this.usedRing, mem.readU16LE(this.usedRing) | VIRTQ_USED_F_NO_NOTIFY);
  }

  /** The queue's size and ring addresses, for messages. */
  toString(): string {
    return `SplitQueue(size ${this.size}, desc ${hex(this.descTable)}, avail ${hex(this.availRing)}, used ${hex(this.usedRing)})`;
  }

  #availEventAddr(): GuestAddress {
    return (this.usedRing + 4 + 8 * this.size) as GuestAddress;
  }

  #checkPlacement(memory: GuestMemory): GuestMemory {
    if (!(memory instanceof GuestMemory)) {
      throw new VirtioError('ERR_INVALID_ARG', 'a queue needs a GuestMemory');
    }
    const rings: [GuestAddress, number, string][] = [
      [this.descTable, DESCRIPTOR_SIZE * this.size, 'descriptor table'],
      [this.availRing, 6 + 2 * this.size, 'available ring'],
      [this.usedRing, 6 + 8 * this.size, 'used ring'],
    ];
    for (const [addr, length, what] of rings) {
      if (!memory.rangeInMemory(addr, length) || (addr === this.usedRing && !writable(memory, addr, length))) {
        throw new VirtioError(
          'ERR_VIRTQ_RING_ADDRESS',
          `the ${what} [${hex(addr)}, ${hex(addr + length)}) is not all ${addr === this.usedRing ? 'writable ' : ''}guest memory`,
          { address: addr, length },
        );
      }
    }
    return memory;
  }
}

/** True when no byte of `[addr, addr + length)` (all memory) lies in a read-only region. */
function writable(memory: GuestMemory, addr: number, length: number): boolean {
  for (let cur = addr; cur < addr + length; ) {
    const r = memory.findRegion(cur as GuestAddress) as GuestMemoryRegion;
    if (r.readOnly) return false;
    cur = r.end;
  }
  return true;
}

const FENCE = new Int32Array(new SharedArrayBuffer(4));

/**
 * A full memory barrier between the stores before and the loads after it: an atomic
 * read-modify-write, which V8 emits as a locked instruction (a full fence on x86).
 */
function fence(): void {
  Atomics.add(FENCE, 0, 0);
}

function checkRingAddress(addr: GuestAddress, alignment: number, what: string): GuestAddress {
  if (!isIndex(addr)) {
    throw new VirtioError('ERR_INVALID_ARG', `the ${what} address must be a non-negative safe integer, got ${String(addr)}`);
  }
  if (addr % alignment !== 0) {
    throw new VirtioError('ERR_VIRTQ_ALIGNMENT', `the ${what} at ${hex(addr)} must be ${alignment}-byte aligned`, {
      address: addr,
    });
  }
  return addr;
}

function checkU16(value: number, name: string): number {
  if (Number.isInteger(value) && value >= 0 && value <= 0xffff) return value;
  throw new VirtioError('ERR_INVALID_ARG', `${name} must be a u16, got ${String(value)}`);
}
