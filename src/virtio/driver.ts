/**
 * A guest-side virtqueue driver for tests: lays a split queue out in a {@link GuestMemory},
 * posts chains (direct or indirect, readable and writable parts), decides kicks as a driver
 * does and reads used entries back. Also writes raw, possibly hostile, descriptors and indices.
 */
import { type GuestAddress, isIndex } from '../address/address.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { DESCRIPTOR_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from './chain.js';
import { VirtioError } from './errors.js';
import { type SplitQueueConfig, VIRTQ_USED_F_NO_NOTIFY } from './queue.js';

/** Options of a {@link VirtqueueDriver}. */
export interface DriverOptions {
  /** Queue size (a power of two). */
  size: number;
  /** Where the descriptor table starts; the rings follow it (16-byte aligned, default 0). */
  ringBase?: GuestAddress;
  /** Where the driver puts request buffers and indirect tables. */
  dataBase: GuestAddress;
  /** Bytes available at `dataBase`. */
  dataSize: number;
  /** Drive the queue with VIRTIO_F_EVENT_IDX. */
  eventIdx?: boolean;
}

/** A guest buffer the driver placed. */
export interface GuestBuffer {
  /** Its guest address. */
  readonly addr: GuestAddress;
  /** Its bytes. */
  readonly len: number;
}

/** A chain the driver made available. */
export interface PostedChain {
  /** The head index the device will report used. */
  readonly head: number;
  /** The device-readable buffers, in chain order. */
  readonly readable: readonly GuestBuffer[];
  /** The device-writable buffers, in chain order. */
  readonly writable: readonly GuestBuffer[];
  /** The indirect table's address, when the chain is indirect. */
  readonly indirectTable?: GuestAddress | undefined;
}

/** An entry of the used ring. */
export interface UsedElement {
  /** The chain's head index. */
  readonly id: number;
  /** Bytes the device wrote into the chain. */
  readonly len: number;
}

/** A raw descriptor to write; `addr` may be a bigint to write values beyond 2^53. */
export interface RawDescriptor {
  /** Guest address (any u64). */
  addr: number | bigint;
  /** Length (a u32). */
  len: number;
  /** `VIRTQ_DESC_F_*` bits. */
  flags: number;
  /** Next index (a u16). */
  next: number;
}

/** Where the driver puts the rings of a split queue: back to back, each aligned as the spec asks. */
export interface SplitRingLayout {
  /** Guest address of the descriptor table. */
  readonly descTable: number;
  /** Guest address of the available ring. */
  readonly availRing: number;
  /** Guest address of the used ring. */
  readonly usedRing: number;
  /** The first guest address after the used ring. */
  readonly end: number;
}

/** The driver's split-ring layout for `size` descriptors starting at `ringBase`. */
export function splitRingLayout(size: number, ringBase = 0): SplitRingLayout {
  const descTable = ringBase;
  const availRing = descTable + DESCRIPTOR_SIZE * size;
  const usedRing = Math.ceil((availRing + 6 + 2 * size) / 4) * 4;
  return { descTable, availRing, usedRing, end: usedRing + 6 + 8 * size };
}

/**
 * The driver half of a split virtqueue, for device tests (Firecracker's VirtQueue test utility).
 *
 * @example
 * const mem = GuestMemory.fromRanges([[GuestAddress(0), 0x20000]]);
 * const driver = new VirtqueueDriver(mem, { size: 16, dataBase: GuestAddress(0x10000), dataSize: 0x10000 });
 * const posted = driver.post([new Uint8Array(16)], [512, 1], { indirect: true });
 * const chain = new SplitQueue(mem, driver.queueConfig()).pop();
 * chain?.descriptors().map((d) => d.len); // => [16, 512, 1]
 * driver.read(posted.writable[1]); // => Uint8Array.of(0)
 */
export class VirtqueueDriver {
  /** The guest memory the queue is laid out in. */
  readonly memory: GuestMemory;
  /** Number of descriptors. */
  readonly size: number;
  /** Guest address of the descriptor table. */
  readonly descTable: GuestAddress;
  /** Guest address of the available ring. */
  readonly availRing: GuestAddress;
  /** Guest address of the used ring. */
  readonly usedRing: GuestAddress;
  /** The driver uses VIRTIO_F_EVENT_IDX. */
  readonly eventIdx: boolean;
  readonly #dataBase: number;
  readonly #dataEnd: number;
  #dataNext: number;
  #free: number[];
  /** Descriptors each outstanding head holds. */
  #held = new Map<number, number[]>();
  #availIdx = 0;
  #kickedAvail = 0;
  #lastUsed = 0;

  /** Lays out (and zeroes) the rings. */
  constructor(memory: GuestMemory, options: DriverOptions) {
    const { size, dataBase, dataSize } = options;
    if (!(isIndex(size) && size >= 1 && (size & (size - 1)) === 0) || !isIndex(dataBase) || !isIndex(dataSize)) {
      throw new VirtioError('ERR_INVALID_ARG', 'driver options need a power-of-two size and a data area');
    }
    const layout = splitRingLayout(size, options.ringBase ?? 0);
    this.memory = memory;
    this.size = size;
    this.descTable = layout.descTable as GuestAddress;
    this.availRing = layout.availRing as GuestAddress;
    this.usedRing = layout.usedRing as GuestAddress;
    this.eventIdx = options.eventIdx === true;
    this.#dataBase = this.#dataNext = dataBase;
    this.#dataEnd = dataBase + dataSize;
    this.#free = Array.from({ length: size }, (_, i) => size - 1 - i);
    memory.zero(this.descTable, layout.end - layout.descTable);
  }

  /** The configuration a device builds its {@link SplitQueue} from. */
  queueConfig(): SplitQueueConfig {
    return {
      size: this.size,
      descTable: this.descTable,
      availRing: this.availRing,
      usedRing: this.usedRing,
      eventIdx: this.eventIdx,
    };
  }

  /** The available index the driver has published. */
  get availIdx(): number {
    return this.#availIdx;
  }

  /** Free descriptors in the table. */
  get freeDescriptors(): number {
    return this.#free.length;
  }

  /**
   * Places `readable` (copied into guest memory) and `writable.length` zeroed device-writable
   * buffers of the given sizes in one chain, and makes it available. With `indirect`, the
   * descriptors go to an indirect table and the chain takes one slot of the queue's table.
   */
  post(readable: readonly Uint8Array[], writable: readonly number[], options: { indirect?: boolean } = {}): PostedChain {
    const count = readable.length + writable.length;
    if (count === 0) throw new VirtioError('ERR_INVALID_ARG', 'a chain needs at least one buffer');
    this.#checkFree(options.indirect ? 1 : count);
    // A post that fails leaves the data area as it was.
    const dataNext = this.#dataNext;
    let r: GuestBuffer[];
    let w: GuestBuffer[];
    let indirectTable: GuestAddress | undefined;
    try {
      r = readable.map((bytes) => {
        const addr = this.alloc(bytes.length);
        this.memory.writeSlice(addr, bytes);
        return { addr, len: bytes.length };
      });
      w = writable.map((len) => {
        const addr = this.alloc(len);
        this.memory.zero(addr, len);
        return { addr, len };
      });
      if (options.indirect) indirectTable = this.alloc(DESCRIPTOR_SIZE * count, DESCRIPTOR_SIZE);
    } catch (e) {
      this.#dataNext = dataNext;
      throw e;
    }
    const parts = [...r.map((b) => ({ ...b, flags: 0 })), ...w.map((b) => ({ ...b, flags: VIRTQ_DESC_F_WRITE }))];
    let head: number;
    if (indirectTable !== undefined) {
      parts.forEach((p, i) => {
        const last = i === parts.length - 1;
        this.writeDescriptor(i, { ...p, flags: p.flags | (last ? 0 : VIRTQ_DESC_F_NEXT), next: last ? 0 : i + 1 }, indirectTable);
      });
      head = this.#take(1)[0];
      this.writeDescriptor(head, { addr: indirectTable, len: DESCRIPTOR_SIZE * parts.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
      this.#held.set(head, [head]);
    } else {
      const ids = this.#take(parts.length);
      parts.forEach((p, i) => {
        const last = i === parts.length - 1;
        this.writeDescriptor(ids[i], { ...p, flags: p.flags | (last ? 0 : VIRTQ_DESC_F_NEXT), next: last ? 0 : ids[i + 1] });
      });
      head = ids[0];
      this.#held.set(head, ids);
    }
    this.publish(head);
    return { head, readable: r, writable: w, indirectTable };
  }

  /**
   * Whether the device asked to be notified of the entries published since the last kick
   * (avail_event under EVENT_IDX, NO_NOTIFY otherwise); the kick is then considered sent.
   */
  kick(): boolean {
    const old = this.#kickedAvail;
    const now = this.#availIdx;
    this.#kickedAvail = now;
    if (old === now) return false;
    if (!this.eventIdx) return (this.memory.readU16LE(this.usedRing) & VIRTQ_USED_F_NO_NOTIFY) === 0;
    const availEvent = this.memory.readU16LE((this.usedRing + 4 + 8 * this.size) as GuestAddress);
    return ((now - availEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  /** The used entries the device published since the last call; their descriptors are freed. */
  used(): UsedElement[] {
    const out: UsedElement[] = [];
    const idx = this.memory.readU16LE((this.usedRing + 2) as GuestAddress);
    for (; this.#lastUsed !== idx; this.#lastUsed = (this.#lastUsed + 1) & 0xffff) {
      const at = this.usedRing + 4 + 8 * (this.#lastUsed & (this.size - 1));
      const id = this.memory.readU32LE(at as GuestAddress);
      const len = this.memory.readU32LE((at + 4) as GuestAddress);
      out.push({ id, len });
      const held = this.#held.get(id);
      if (held !== undefined) {
        this.#held.delete(id);
        this.#free.push(...held);
      }
    }
    if (this.#held.size === 0) this.#dataNext = this.#dataBase;
    return out;
  }

  /** The bytes of a buffer the driver placed (what the device wrote into it). */
  read(buffer: GuestBuffer): Uint8Array {
    const out = new Uint8Array(buffer.len);
    this.memory.readSlice(buffer.addr, out);
    return out;
  }

  /** Sets the driver's used_event (EVENT_IDX): interrupt once the used index passes it. */
  setUsedEvent(idx: number): void {
    this.memory.writeU16LE((this.availRing + 4 + 2 * this.size) as GuestAddress, idx & 0xffff);
  }

  /** Sets avail.flags (e.g. VIRTQ_AVAIL_F_NO_INTERRUPT). */
  setAvailFlags(flags: number): void {
    this.memory.writeU16LE(this.availRing, flags);
  }

  // ---- raw access, for hostile drivers -------------------------------------------------------

  /** Writes descriptor `index` of `table` (default: the queue's table) as given, unchecked. */
  writeDescriptor(index: number, d: RawDescriptor, table: GuestAddress = this.descTable): void {
    const at = table + DESCRIPTOR_SIZE * index;
    this.memory.writeU64LE(at as GuestAddress, d.addr);
    this.memory.writeU32LE((at + 8) as GuestAddress, d.len);
    this.memory.writeU16LE((at + 12) as GuestAddress, d.flags);
    this.memory.writeU16LE((at + 14) as GuestAddress, d.next);
  }

  /** Puts `head` in the next available slot and publishes the new available index. */
  publish(head: number): void {
    this.memory.writeU16LE((this.availRing + 4 + 2 * (this.#availIdx & (this.size - 1))) as GuestAddress, head);
    this.setAvailIdx(this.#availIdx + 1);
  }

  /** Writes the available index as given (a hostile driver may claim anything). */
  setAvailIdx(idx: number): void {
    this.#availIdx = idx & 0xffff;
    this.memory.writeU16LE((this.availRing + 2) as GuestAddress, this.#availIdx);
  }

  /** Reserves `len` bytes of the data area (`align`-aligned). */
  alloc(len: number, align = 8): GuestAddress {
    const addr = Math.ceil(this.#dataNext / align) * align;
    if (addr + len > this.#dataEnd) {
      throw new VirtioError('ERR_INVALID_ARG', `the driver's data area has no room for ${len} more bytes`, { length: len });
    }
    this.#dataNext = addr + len;
    return addr as GuestAddress;
  }

  #checkFree(n: number): void {
    if (n > this.#free.length) {
      throw new VirtioError('ERR_INVALID_ARG', `the driver needs ${n} descriptors; ${this.#free.length} are free`);
    }
  }

  #take(n: number): number[] {
    this.#checkFree(n);
    return this.#free.splice(this.#free.length - n, n).reverse();
  }
}
