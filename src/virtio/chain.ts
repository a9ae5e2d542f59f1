/**
 * Descriptor chains of a split virtqueue: walking them through the descriptor table (and indirect
 * tables) with every rule checked, since all of it is written by the guest.
 */
import type { GuestAddress } from '../address/address.js';
import { hex } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VirtioError } from './errors.js';

/** The buffer continues in the descriptor named by `next`. */
export const VIRTQ_DESC_F_NEXT = 1;
/** The buffer is device-writable (otherwise device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** The buffer is a table of descriptors (an indirect table). */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Bytes of one descriptor: addr u64, len u32, flags u16, next u16, little-endian. */
export const DESCRIPTOR_SIZE = 16;

/** One descriptor as read from guest memory, its address checked to be a safe integer. */
export interface Descriptor {
  /** Its index in the table it was read from (the queue's table, or an indirect table). */
  readonly index: number;
  /** Guest address of the buffer. */
  readonly addr: GuestAddress;
  /** Bytes of the buffer. */
  readonly len: number;
  /** `VIRTQ_DESC_F_*` bits. */
  readonly flags: number;
  /** The next descriptor's index, when NEXT is set. */
  readonly next: number;
  /** True for a device-writable buffer (`VIRTQ_DESC_F_WRITE`). */
  readonly writable: boolean;
}

/** The largest safe u64 high word: 2^53 - 1 >> 32. */
const MAX_SAFE_HIGH = 0x1f_ffff;
/** The most bytes the buffers of one chain may hold together (virtio 1.2, 2.7.5). */
const MAX_CHAIN_BYTES = 0xffff_ffff;

/**
 * A chain of descriptors posted by the driver, starting at `head`.
 *
 * Iterating it reads the descriptors one by one from guest memory and checks each before it is
 * yielded: index in range, no more descriptors than the queue size (so a loop ends), the buffer
 * wholly in guest memory with a safe address and no overflow, no readable descriptor after a
 * writable one, buffers of at most 2^32 - 1 bytes in all, and the indirect rules (length a non-zero multiple of 16 holding at most the
 * queue size, no nesting, no NEXT beside INDIRECT). The first broken rule throws a
 * {@link VirtioError}; consumers that must not half-apply a chain use {@link descriptors}, which
 * checks the whole chain before returning any of it.
 *
 * An indirect descriptor is followed, not yielded. Its own WRITE flag is ignored, as the spec
 * asks. Iterating twice reads guest memory twice: the guest may have changed it in between.
 */
export class DescriptorChain implements Iterable<Descriptor> {
  /** The guest memory the chain was popped from (a snapshot: a later memory swap leaves it). */
  readonly memory: GuestMemory;
  /** The head index: what the device reports back in the used ring. */
  readonly head: number;
  /** Guest address of the queue's descriptor table, where the chain starts. */
  readonly table: GuestAddress;
  readonly #queueSize: number;

  /**
   * @param table - Guest address of the queue's descriptor table (`queueSize` entries, checked
   *   by the queue to lie in `memory`).
   * @throws {VirtioError} `ERR_DESC_INDEX` when `head >= queueSize`.
   */
  constructor(memory: GuestMemory, table: GuestAddress, queueSize: number, head: number) {
    if (!(Number.isInteger(head) && head >= 0 && head < queueSize)) {
      throw new VirtioError('ERR_DESC_INDEX', `head index ${head} is outside the queue of ${queueSize} descriptors`, {
        index: head,
      });
    }
    this.memory = memory;
    this.table = table;
    this.#queueSize = queueSize;
    this.head = head;
  }

  /**
   * Every descriptor of the chain, all checked before the array is returned.
   *
   * @throws {VirtioError} as iteration.
   */
  descriptors(): Descriptor[] {
    const out: Descriptor[] = [];
    const walk = new ChainWalk(this.memory, this.table, this.#queueSize, this.head);
    for (let d = walk.step(); d !== undefined; d = walk.step()) out.push(d);
    return out;
  }

  /** Walks the chain lazily, checking each descriptor as it is reached. */
  [Symbol.iterator](): Iterator<Descriptor, undefined> {
    const walk = new ChainWalk(this.memory, this.table, this.#queueSize, this.head);
    return {
      next: () => {
        const value = walk.step();
        return value === undefined ? { done: true, value: undefined } : { done: false, value };
      },
    };
  }
}

/** One pass over a chain: the walker's state between descriptors. */
class ChainWalk {
  readonly #mem: GuestMemory;
  readonly #queueSize: number;
  readonly #head: number;
  #table: number;
  #tableSize: number;
  /** Descriptors the current table may still give: ends loops. */
  #ttl: number;
  #indirect = false;
  #sawWritable = false;
  /** Bytes of the buffers yielded so far. */
  #total = 0;
  /** The next index to read, or -1 once the chain ended. */
  #index: number;

  constructor(mem: GuestMemory, table: number, queueSize: number, head: number) {
    this.#mem = mem;
    this.#queueSize = queueSize;
    this.#head = head;
    this.#table = table;
    this.#tableSize = queueSize;
    this.#ttl = queueSize;
    this.#index = head;
  }

  /** The next descriptor, checked; `undefined` after the last. */
  step(): Descriptor | undefined {
    const mem = this.#mem;
    for (;;) {
      const index = this.#index;
      if (index < 0) return undefined;
      if (index >= this.#tableSize) {
        throw new VirtioError(
          'ERR_DESC_INDEX',
          `descriptor index ${index} is outside the ${this.#indirect ? 'indirect ' : ''}table of ${this.#tableSize}`,
          { index },
        );
      }
      if (this.#ttl-- === 0) {
        throw new VirtioError(
          'ERR_DESC_CHAIN_TOO_LONG',
          `the chain at head ${this.#head} has more than ${this.#indirect ? this.#tableSize : this.#queueSize} descriptors (a loop?)`,
          { index },
        );
      }
      const at = this.#table + index * DESCRIPTOR_SIZE;
      const lo = mem.readU32LE(at as GuestAddress);
      const hi = mem.readU32LE((at + 4) as GuestAddress);
      const len = mem.readU32LE((at + 8) as GuestAddress);
      const flags = mem.readU16LE((at + 12) as GuestAddress);
      const next = mem.readU16LE((at + 14) as GuestAddress);
      if (hi > MAX_SAFE_HIGH) {
        const addr = (BigInt(hi) << 32n) | BigInt(lo);
        throw new VirtioError('ERR_DESC_UNSAFE_ADDRESS', `descriptor ${index} has address ${hex(addr)}, beyond 2^53`, {
          index,
          length: len,
        });
      }
      const addr = (hi * 2 ** 32 + lo) as GuestAddress;
      if (addr + len > Number.MAX_SAFE_INTEGER) {
        throw new VirtioError('ERR_DESC_OVERFLOW', `descriptor ${index}: ${hex(addr)} + ${hex(len)} passes 2^53`, {
          index,
          address: addr,
          length: len,
        });
      }
      if (!inMemory(mem, addr, len)) {
        throw new VirtioError(
          'ERR_DESC_ADDRESS',
          `descriptor ${index}: [${hex(addr)}, ${hex(addr + len)}) is not all guest memory`,
          { index, address: addr, length: len },
        );
      }
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        this.#enterIndirect(index, addr, len, flags);
        continue;
      }
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (writable) this.#sawWritable = true;
      else if (this.#sawWritable) {
        throw new VirtioError('ERR_DESC_READ_AFTER_WRITE', `descriptor ${index} is readable but follows a writable one`, {
          index,
          address: addr,
          length: len,
        });
      }
      this.#total += len;
      if (this.#total > MAX_CHAIN_BYTES) {
        // The code the buffer builders use for the same limit, so a caller sees one error for it.
        throw new VirtioError('ERR_IOVEC_OVERFLOW', `the chain at head ${this.#head} holds more than 2^32 - 1 bytes at descriptor ${index}`, {
          index,
          address: addr,
          length: this.#total,
        });
      }
      this.#index = (flags & VIRTQ_DESC_F_NEXT) === 0 ? -1 : next;
      return { index, addr, len, flags, next, writable };
    }
  }

  #enterIndirect(index: number, addr: GuestAddress, len: number, flags: number): void {
    const details = { index, address: addr, length: len };
    if (this.#indirect) {
      throw new VirtioError('ERR_DESC_INDIRECT_NESTED', `descriptor ${index} of an indirect table is indirect itself`, details);
    }
    if ((flags & VIRTQ_DESC_F_NEXT) !== 0) {
      throw new VirtioError('ERR_DESC_INDIRECT_NEXT', `descriptor ${index} sets both INDIRECT and NEXT`, details);
    }
    if (len === 0 || len % DESCRIPTOR_SIZE !== 0 || len / DESCRIPTOR_SIZE > this.#queueSize) {
      throw new VirtioError(
        'ERR_DESC_INDIRECT_LENGTH',
        `indirect table of ${len} bytes at descriptor ${index}: want a non-zero multiple of 16, at most ${this.#queueSize} entries`,
        details,
      );
    }
    this.#table = addr;
    this.#tableSize = this.#ttl = len / DESCRIPTOR_SIZE;
    this.#indirect = true;
    this.#index = 0;
  }
}

/**
 * True when every byte of `[addr, addr + len)` is guest memory. Unlike `rangeInMemory` it throws
 * nothing on the way: hostile chains make this the common case, and an error costs microseconds.
 */
function inMemory(mem: GuestMemory, addr: number, len: number): boolean {
  for (let cur = addr, end = addr + len; cur < end; ) {
    const r = mem.findRegion(cur as GuestAddress);
    if (r === undefined) return false;
    cur = r.end;
  }
  return true;
}
