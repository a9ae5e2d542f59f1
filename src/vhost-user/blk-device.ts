import { encodeBlkConfig, VIRTIO_BLK_F_MQ } from '../virtio/blk-config.js';
import type { VirtioBlk } from '../virtio/blk.js';
import type { SplitQueue } from '../virtio/queue.js';
import type { QueueNotifier, VhostUserDevice } from './device.js';
import { VhostUserError } from './errors.js';

/** Options of a {@link VhostUserBlkDevice}. */
export interface VhostUserBlkOptions {
  /** Request queues to offer (VIRTIO_BLK_F_MQ above 1). Default 1. */
  queues?: number | undefined;
}

/** The most request queues offered. */
export const MAX_BLK_QUEUES = 16;

/**
 * vhost-user-blk: a {@link VhostUserDevice} over `guestmem/virtio`'s {@link VirtioBlk}. Requests
 * are served on the kick, straight between the image and guest memory (readv/writev); each run
 * drains the queue, re-enables notifications and drains what raced in before it signals, so an
 * event-idx driver is interrupted once per batch.
 *
 * @example
 * import { FdDisk, VirtioBlk, VIRTIO_BLK_F_MQ } from 'guestmem/virtio';
 * import { VhostUserBlkDevice } from 'guestmem/vhost-user';
 *
 * // Any BlockDisk will do; FdDisk serves an image file or block device (here stdin's, sized).
 * const device = new VhostUserBlkDevice(new VirtioBlk(new FdDisk(0, { size: 1 << 20, readOnly: true })), { queues: 4 });
 * device.maxQueues; // => 4
 * (device.features & (1n << BigInt(VIRTIO_BLK_F_MQ))) !== 0n; // => true
 */
export class VhostUserBlkDevice implements VhostUserDevice {
  /** The virtio-blk request handler, over the image. */
  readonly blk: VirtioBlk;
  readonly maxQueues: number;
  readonly features: bigint;
  readonly #config: Uint8Array;
  readonly #queues = new Map<number, { queue: SplitQueue; notifier: QueueNotifier }>();
  /** Requests served since creation (for benchmarks and logs). */
  requests = 0;

  /** @throws {VhostUserError} `ERR_VHOST_USER_INVALID_ARG` for a queue count outside 1..16. */
  constructor(blk: VirtioBlk, options: VhostUserBlkOptions = {}) {
    const queues = options.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > MAX_BLK_QUEUES) {
      throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `queues must be an integer from 1 to ${MAX_BLK_QUEUES}, got ${String(queues)}`);
    }
    this.blk = blk;
    this.maxQueues = queues;
    this.features = blk.features | (queues > 1 ? 1n << BigInt(VIRTIO_BLK_F_MQ) : 0n);
    this.#config = encodeBlkConfig({ ...blk.configValues(), num_queues: queues });
  }

  readConfig(offset: number, length: number): Uint8Array {
    return this.#config.subarray(offset, offset + length);
  }

  /** The config space is read-only without VIRTIO_BLK_F_CONFIG_WCE, which is not offered. */
  writeConfig(_offset: number, _data: Uint8Array): void {}

  setFeatures(_features: bigint): void {}

  startQueue(index: number, queue: SplitQueue, notifier: QueueNotifier): void {
    this.#queues.set(index, { queue, notifier });
  }

  kick(index: number): boolean {
    const q = this.#queues.get(index);
    if (q === undefined) return false;
    const { queue } = q;
    queue.disableNotification();
    this.requests += this.blk.processQueue(queue);
    // More than a queue's worth waiting, or more posted as notifications came back on: come back
    // after other events, so that a guest that keeps posting cannot hold the event loop.
    const more = queue.availableCount() > 0 || queue.enableNotification();
    if (queue.needsNotification()) q.notifier.signal();
    return more;
  }

  stopQueue(index: number): void {
    this.#queues.delete(index);
  }

  reset(): void {
    this.#queues.clear();
  }
}
