import type { SplitQueue } from '../virtio/queue.js';

/** How a device tells the driver that a queue has news: the vring's call eventfd. */
export interface QueueNotifier {
  /** Signals the call eventfd (nothing when the front-end gave none). */
  signal(): void;
}

/**
 * A device behind a vhost-user back-end: what {@link VhostUserSession} needs from it. The
 * session does the protocol (features, memory, vrings, config messages, the log); the device
 * serves its queues and its config space.
 *
 * Calls come on the event loop, one at a time. Errors a device throws from {@link VhostUserDevice.kick} stop that
 * queue and signal its error eventfd; errors from the other calls end the connection.
 */
export interface VhostUserDevice {
  /** Virtio feature bits the device offers (its own, ring features, VERSION_1). */
  readonly features: bigint;
  /** The most queues it can serve (GET_QUEUE_NUM). */
  readonly maxQueues: number;
  /** The config space bytes `[offset, offset + length)`; bytes beyond it read as zero. */
  readConfig(offset: number, length: number): Uint8Array;
  /** A write of the driver to the config space. */
  writeConfig(offset: number, data: Uint8Array): void;
  /** The features the front-end acknowledged (a subset of {@link VhostUserDevice.features} and transport bits). */
  setFeatures(features: bigint): void;
  /** Queue `index` is ready: serve it until {@link VhostUserDevice.stopQueue}. */
  startQueue(index: number, queue: SplitQueue, notifier: QueueNotifier): void;
  /**
   * The driver kicked queue `index` (also called once right after it starts). Serve a bounded
   * amount and return true when requests are left: the session calls again after other events,
   * so one busy (or hostile) guest cannot hold the event loop.
   */
  kick(index: number): boolean | void;
  /** Stop serving queue `index`; the session reads where it stands from the queue afterwards. */
  stopQueue(index: number): void;
  /** Back to the state before negotiation (RESET_DEVICE, or the front-end went away). */
  reset(): void;
}
