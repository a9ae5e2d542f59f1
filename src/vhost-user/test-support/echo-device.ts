import type { SplitQueue } from '../../virtio/queue.js';
import { splitChain } from '../../virtio/iovec.js';
import type { QueueNotifier, VhostUserDevice } from '../device.js';
import { bit, Feature } from '../protocol.js';

/**
 * A device for protocol tests: fills every writable buffer with 0x5a, completes the chain with
 * the bytes written, and records what the session asked of it.
 */
export class EchoDevice implements VhostUserDevice {
  readonly features = bit(Feature.VERSION_1) | bit(Feature.RING_EVENT_IDX);
  readonly maxQueues = 2;
  readonly config = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
  readonly calls: string[] = [];
  acked = 0n;
  queues = new Map<number, { queue: SplitQueue; notifier: QueueNotifier }>();

  readConfig(offset: number, length: number): Uint8Array {
    this.calls.push(`readConfig ${offset} ${length}`);
    return this.config.subarray(offset, offset + length);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    this.calls.push(`writeConfig ${offset} ${[...data].join(',')}`);
    this.config.set(data.subarray(0, Math.max(0, this.config.length - offset)), offset);
  }

  setFeatures(features: bigint): void {
    this.acked = features;
  }

  startQueue(index: number, queue: SplitQueue, notifier: QueueNotifier): void {
    this.calls.push(`start ${index}`);
    this.queues.set(index, { queue, notifier });
  }

  kick(index: number): void {
    const q = this.queues.get(index);
    if (q === undefined) throw new Error(`kick of stopped queue ${index}`);
    for (let chain; (chain = q.queue.pop()); ) {
      const { head, writer } = splitChain(chain);
      writer.writeAllAt(0, new Uint8Array(writer.length).fill(0x5a));
      q.queue.addUsed(head, writer.length);
    }
    if (q.queue.needsNotification()) q.notifier.signal();
  }

  stopQueue(index: number): void {
    this.calls.push(`stop ${index}`);
    this.queues.delete(index);
  }

  reset(): void {
    this.calls.push('reset');
    this.queues.clear();
    this.acked = 0n;
  }
}
