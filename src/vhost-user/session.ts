import { GuestmemError, hex } from '../errors.js';
import type { GuestAddress } from '../address/address.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { SplitQueue } from '../virtio/queue.js';
import type { QueueNotifier, VhostUserDevice } from './device.js';
import { VhostUserError } from './errors.js';
import { VhostUserLog } from './log.js';
import { checkSealed, type MemoryTableOptions, readRegion, VhostUserMemoryTable } from './memory.js';
import { expectPayload, type Message, MessageReader, sendReply } from './framing.js';
import {
  bit,
  Feature,
  FLAG_NEED_REPLY,
  MAX_CONFIG_SIZE,
  MAX_MEM_REGIONS,
  MAX_MEM_SLOTS,
  PayloadSize,
  ProtocolFeature,
  Request,
  requestName,
  VRING_F_LOG,
  VRING_IDX_MASK,
  VRING_NOFD_MASK,
} from './protocol.js';
import { closeFd, errnoName, eventfdRead, eventfdWrite, type FdWatcher, Readiness, watch } from './sys.js';

/** Protocol features this session implements. */
export const PROTOCOL_FEATURES: bigint =
  bit(ProtocolFeature.MQ) |
  bit(ProtocolFeature.LOG_SHMFD) |
  bit(ProtocolFeature.REPLY_ACK) |
  bit(ProtocolFeature.CONFIG) |
  bit(ProtocolFeature.RESET_DEVICE) |
  bit(ProtocolFeature.CONFIGURE_MEM_SLOTS);

/** Options of a {@link VhostUserSession}. */
export interface SessionOptions {
  /** Called once when the session ends: `error` is undefined when the front-end hung up. */
  onClose?: ((error: VhostUserError | undefined) => void) | undefined;
  /** Called when a queue stopped because the device failed on it (a broken ring, say). */
  onQueueError?: ((index: number, error: unknown) => void) | undefined;
  /**
   * The protocol features to offer: {@link PROTOCOL_FEATURES} (the default) or a subset, such
   * as one without CONFIGURE_MEM_SLOTS, so that the front-end sends SET_MEM_TABLE.
   */
  protocolFeatures?: bigint | undefined;
  /**
   * Map memory and log fds that are not sealed against shrinking (`F_SEAL_SHRINK`): regular
   * files, unsealed memfds. Default false: they end the session with `ERR_VHOST_USER_UNSEALED`.
   * Set it only for a front-end you trust: one that truncates such a file kills this process
   * with SIGBUS. QEMU's `memory-backend-memfd` (and its dirty log) are sealed by default.
   */
  allowUnsealedMemory?: boolean | undefined;
  /**
   * The most bytes of guest memory the front-end may have mapped at once, all regions together
   * (default 1 TiB: `DEFAULT_MAX_MEMORY`); a table beyond it ends the session with
   * `ERR_VHOST_USER_MEM_TABLE`.
   */
  maxMemory?: number | undefined;
  /**
   * Milliseconds the front-end has from the connection to SET_OWNER (QEMU sends it right after
   * its feature negotiation, GET_FEATURES and the protocol features): a connection that has not
   * sent it then is dropped with `ERR_VHOST_USER_TIMEOUT`, so that it cannot hold a
   * one-at-a-time server. After SET_OWNER no timeout applies. Default
   * {@link DEFAULT_NEGOTIATION_TIMEOUT}; 0 waits forever.
   */
  negotiationTimeout?: number | undefined;
  /**
   * Called with each front-end message before it is handled (a protocol trace): the request
   * ({@link requestName} names it), the payload's size and the number of fds it carried.
   */
  onMessage?: ((request: number, size: number, fds: number) => void) | undefined;
}

/** The default of {@link SessionOptions.negotiationTimeout}: 10 s. */
export const DEFAULT_NEGOTIATION_TIMEOUT = 10_000;

/**
 * Checks the options a session will take, so that a server can refuse them before it listens.
 *
 * @throws {VhostUserError} `ERR_VHOST_USER_INVALID_ARG`
 */
export function checkSessionOptions(options: SessionOptions): void {
  const { maxMemory, negotiationTimeout } = options;
  if (maxMemory !== undefined && (!Number.isSafeInteger(maxMemory) || maxMemory <= 0)) {
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `maxMemory must be a positive safe integer, not ${String(maxMemory)}`);
  }
  // setTimeout takes at most 2^31 - 1 ms (24.8 days).
  if (negotiationTimeout !== undefined && (!Number.isInteger(negotiationTimeout) || negotiationTimeout < 0 || negotiationTimeout > 0x7fff_ffff)) {
    throw new VhostUserError(
      'ERR_VHOST_USER_INVALID_ARG',
      `negotiationTimeout must be an integer number of milliseconds from 0 to 2^31 - 1, not ${String(negotiationTimeout)}`,
    );
  }
}

/** Everything the front-end told about one vring. */
class Vring implements QueueNotifier {
  size = 0;
  base = 0;
  /** Front-end virtual addresses of the rings. */
  user: RingAddresses | undefined;
  kickFd: number | undefined;
  callFd: number | undefined;
  errFd: number | undefined;
  enabled = false;
  queue: SplitQueue | undefined;
  watcher: FdWatcher | undefined;

  signal(): void {
    if (this.callFd !== undefined) eventfdWrite(this.callFd);
  }

  closeFds(): void {
    this.watcher?.close();
    this.watcher = undefined;
    for (const fd of [this.kickFd, this.callFd, this.errFd]) closeFd(fd);
    this.kickFd = this.callFd = this.errFd = undefined;
  }
}

/**
 * The back-end side of one vhost-user connection: reads the front-end's messages off the socket
 * (on the event loop, never blocking), keeps the negotiated state, maps the guest's memory and
 * the dirty log, sets up the vrings and hands ready queues to a {@link VhostUserDevice}.
 *
 * A front-end that breaks the protocol (a malformed message, wrong descriptor counts, a memory
 * table that overlaps or does not map, rings outside it, features it was not offered) ends the
 * session with a {@link VhostUserError}: every fd and mapping is released, the device is reset,
 * and `onClose` says why. A device failing on a queue (a guest that broke its ring) stops only that
 * queue and signals its error eventfd.
 *
 * A {@link VhostUserServer} makes one per connection; `new VhostUserSession(fd, device, options)`
 * serves a socket that is already connected (an fd inherited from the front-end's launcher).
 *
 * @example
 * import { VhostUserBlkDevice, VhostUserServer } from 'guestmem/vhost-user';
 * import { FdDisk, VirtioBlk } from 'guestmem/virtio';
 * import { mkdtempSync } from 'node:fs';
 * import { tmpdir } from 'node:os';
 *
 * const device = new VhostUserBlkDevice(new VirtioBlk(new FdDisk(0, { size: 1 << 20, readOnly: true })));
 * const server = VhostUserServer.listen(`${mkdtempSync(`${tmpdir()}/vus-`)}/vub.sock`, device, {
 *   onConnect: (session) => {
 *     // Once the front-end sent its memory table, the guest's RAM is a GuestMemory here.
 *     setTimeout(() => console.log(`guest memory: ${session.memory}, dirty log active: ${session.log.active}`), 1000);
 *   },
 * });
 * server.session; // => undefined
 * server.close();
 */
export class VhostUserSession implements Disposable {
  readonly #fd: number;
  readonly #device: VhostUserDevice;
  readonly #options: SessionOptions;
  readonly #watcher: FdWatcher;
  readonly #log = new VhostUserLog();
  readonly #vrings: Vring[];
  #table: VhostUserMemoryTable | undefined;
  /** Per started ring: kicks that found it empty (see #checkShared), -1 once it was seen written. */
  readonly #emptyKicks = new WeakMap<SplitQueue, number>();
  #features = 0n;
  #protocol = 0n;
  /** SET_LOG_FD's eventfd, signalled after each run of a queue while logging. */
  #logFd: number | undefined;
  #closed = false;
  readonly #reader: MessageReader;
  /** Runs until SET_OWNER: a connection that never opens the session is dropped. */
  #negotiation: ReturnType<typeof setTimeout> | undefined;

  /**
   * Serves the connected socket `fd`, which the session owns from now on (closed at the end).
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_SYSTEM` when the socket cannot be watched,
   *   `ERR_VHOST_USER_INVALID_ARG` for options out of range (the socket is closed then).
   */
  constructor(fd: number, device: VhostUserDevice, options: SessionOptions = {}) {
    try {
      checkSessionOptions(options);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    this.#fd = fd;
    this.#device = device;
    this.#options = options;
    this.#vrings = Array.from({ length: device.maxQueues }, () => new Vring());
    this.#reader = new MessageReader(fd);
    try {
      this.#watcher = watch(fd, Readiness.READABLE | Readiness.DISCONNECT, (errno) => this.#onReadable(errno));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    const timeout = options.negotiationTimeout ?? DEFAULT_NEGOTIATION_TIMEOUT;
    if (timeout > 0) {
      this.#negotiation = setTimeout(() => {
        this.close(
          new VhostUserError('ERR_VHOST_USER_TIMEOUT', `the front-end did not send SET_OWNER within ${timeout} ms: the connection is dropped`, {
            expected: timeout,
          }),
        );
      }, timeout);
      this.#negotiation.unref(); // the socket's watcher is what keeps the process alive
    }
  }

  /** The guest's memory, once the front-end sent a memory table. */
  get memory(): GuestMemory | undefined {
    return this.#table?.memory;
  }

  /** The dirty log (for inspection; it marks only while LOG_ALL is negotiated and mapped). */
  get log(): VhostUserLog {
    return this.#log;
  }

  /** The acknowledged virtio features. */
  get features(): bigint {
    return this.#features;
  }

  /** The acknowledged protocol features. */
  get protocolFeatures(): bigint {
    return this.#protocol;
  }

  /** True once the session ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Virtio features offered: the device's plus the transport's. */
  get offeredFeatures(): bigint {
    return this.#device.features | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.LOG_ALL);
  }

  /** Protocol features offered. */
  get offeredProtocolFeatures(): bigint {
    return (this.#options.protocolFeatures ?? PROTOCOL_FEATURES) & PROTOCOL_FEATURES;
  }

  /** Ends the session: stops the queues, releases every fd and mapping, resets the device. */
  close(error?: VhostUserError): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#negotiation);
    this.#watcher.close();
    try {
      this.#resetState();
    } catch (e) {
      error ??= asVhostUserError(e);
    }
    for (const vring of this.#vrings) vring.closeFds();
    closeFd(this.#fd);
    closeFd(this.#logFd);
    this.#log.close();
    this.#table?.close();
    this.#table = undefined;
    this.#reader.close();
    this.#options.onClose?.(error);
  }

  /** Same as {@link VhostUserSession.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- messages ----

  #onReadable(errno: number): void {
    this.#guard(() => {
      while (!this.#closed) {
        const msg = this.#reader.next();
        if (msg === undefined) break;
        if (msg === null) return this.close();
        this.#dispatch(msg);
      }
      // What arrived was served; a socket whose polling failed is watched no more.
      if (!this.#closed) checkPolled(errno, 'the socket');
    });
  }

  /** Runs an event-loop callback: whatever it throws ends the session, never the process. */
  #guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.close(asVhostUserError(e));
    }
  }

  #dispatch(msg: Message): void {
    const { request, flags } = msg;
    try {
      this.#options.onMessage?.(request, msg.payload.byteLength, msg.fds.length);
      const replied = this.#handle(msg);
      if (!replied && (flags & FLAG_NEED_REPLY) !== 0 && this.#has(ProtocolFeature.REPLY_ACK)) {
        this.#replyU64(request, 0n);
      }
    } catch (e) {
      const err = asVhostUserError(e, request);
      if ((flags & FLAG_NEED_REPLY) !== 0 && this.#has(ProtocolFeature.REPLY_ACK)) {
        try {
          this.#replyU64(request, 1n);
        } catch {}
      }
      throw err;
    } finally {
      for (const fd of msg.fds) closeFd(fd);
    }
  }

  #reply(request: number, payload: Uint8Array): void {
    sendReply(this.#fd, request, payload);
  }

  #replyU64(request: number, value: bigint): void {
    const p = new Uint8Array(8);
    new DataView(p.buffer).setBigUint64(0, value, true);
    this.#reply(request, p);
  }

  get #tableOptions(): MemoryTableOptions {
    return { allowUnsealed: this.#options.allowUnsealedMemory, maxBytes: this.#options.maxMemory };
  }

  #has(feature: bigint): boolean {
    return (this.#protocol & bit(feature)) !== 0n;
  }

  // ---- requests ----

  /** Handles one message; returns true when it sent a reply of its own. */
  #handle(msg: Message): boolean {
    const R = Request;
    switch (msg.request) {
      case R.GET_FEATURES:
        expectPayload(msg, 0, 0);
        this.#replyU64(msg.request, this.offeredFeatures);
        return true;
      case R.SET_FEATURES: {
        expectPayload(msg, 8, 0);
        const features = msg.payload.getBigUint64(0, true);
        const extra = features & ~this.offeredFeatures;
        if (extra !== 0n) throw stateError(msg, `features ${hex(extra)} were not offered`);
        this.#features = features;
        this.#log.setLogAll((features & bit(Feature.LOG_ALL)) !== 0n);
        this.#device.setFeatures(features);
        return false;
      }
      case R.SET_OWNER:
        expectPayload(msg, 0, 0); // one connection is one owner: nothing to record
        clearTimeout(this.#negotiation);
        return false;
      case R.RESET_OWNER:
        expectPayload(msg, 0, 0);
        this.#resetState();
        return false;
      case R.RESET_DEVICE:
        expectPayload(msg, 0, 0);
        this.#need(msg, ProtocolFeature.RESET_DEVICE);
        this.#resetState(true);
        return false;
      case R.GET_PROTOCOL_FEATURES:
        expectPayload(msg, 0, 0);
        this.#replyU64(msg.request, this.offeredProtocolFeatures);
        return true;
      case R.SET_PROTOCOL_FEATURES: {
        expectPayload(msg, 8, 0);
        const features = msg.payload.getBigUint64(0, true);
        const extra = features & ~this.offeredProtocolFeatures;
        if (extra !== 0n) throw stateError(msg, `protocol features ${hex(extra)} were not offered`);
        this.#protocol = features;
        return false;
      }
      case R.GET_QUEUE_NUM:
        expectPayload(msg, 0, 0);
        this.#need(msg, ProtocolFeature.MQ);
        this.#replyU64(msg.request, BigInt(this.#device.maxQueues));
        return true;
      case R.SET_MEM_TABLE:
        this.#setMemTable(msg);
        return false;
      case R.GET_MAX_MEM_SLOTS:
        expectPayload(msg, 0, 0);
        this.#need(msg, ProtocolFeature.CONFIGURE_MEM_SLOTS);
        this.#replyU64(msg.request, BigInt(MAX_MEM_SLOTS));
        return true;
      case R.ADD_MEM_REG: {
        expectPayload(msg, PayloadSize.SINGLE_MEM_REGION, 1);
        this.#need(msg, ProtocolFeature.CONFIGURE_MEM_SLOTS);
        const region = readRegion(msg.payload, 8);
        const table = this.#table;
        // Adding memory cannot move a ring out of it: the running queues only need the new memory.
        const options = this.#tableOptions;
        this.#useTable(
          table === undefined
            ? VhostUserMemoryTable.map([region], msg.fds, this.#log, options)
            : table.add(region, msg.fds[0], this.#log, options),
        );
        return false;
      }
      case R.REM_MEM_REG: {
        // QEMU sends the region's fd along; it is closed with the message.
        if (msg.fds.length > 1) expectPayload(msg, PayloadSize.SINGLE_MEM_REGION, 1);
        expectPayload(msg, PayloadSize.SINGLE_MEM_REGION, -1);
        this.#need(msg, ProtocolFeature.CONFIGURE_MEM_SLOTS);
        if (this.#table === undefined) throw stateError(msg, 'there is no memory to remove');
        const next = this.#table.remove(readRegion(msg.payload, 8));
        // A running ring in the removed memory ends the session (closing the old table).
        for (const vring of this.#vrings) {
          if (vring.user === undefined) continue;
          if (next === undefined) {
            if (vring.queue !== undefined) throw stateError(msg, 'the memory of a running vring was removed');
            continue;
          }
          if (vring.queue !== undefined) translateRings(next, vring.size, vring.user);
        }
        this.#useTable(next);
        return false;
      }
      case R.SET_LOG_BASE: {
        expectPayload(msg, PayloadSize.LOG, 1);
        this.#need(msg, ProtocolFeature.LOG_SHMFD);
        const size = safeU64(msg, 0, 'log size');
        const offset = safeU64(msg, 8, 'log offset');
        checkSealed(msg.fds[0], 'the dirty log', this.#options.allowUnsealedMemory, { request: msg.request, length: size });
        this.#log.map(msg.fds[0], size, offset);
        this.#replyU64(msg.request, 0n);
        return true;
      }
      case R.SET_LOG_FD:
        expectPayload(msg, msg.payload.byteLength === 8 ? 8 : 0, 1);
        closeFd(this.#logFd);
        this.#logFd = msg.fds.shift();
        return false;
      case R.SET_VRING_NUM: {
        const [vring, num] = this.#state(msg);
        if (vring.queue !== undefined) throw stateError(msg, 'the vring is running');
        if (num < 1 || num > 32768 || (num & (num - 1)) !== 0) {
          throw vringError(msg, `vring size ${num} is not a power of two from 1 to 32768`);
        }
        vring.size = num;
        return false;
      }
      case R.SET_VRING_BASE: {
        const [vring, num] = this.#state(msg);
        if (vring.queue !== undefined) throw stateError(msg, 'the vring is running');
        if (num > 0xffff) throw vringError(msg, `vring base ${num} is not a u16`);
        vring.base = num;
        return false;
      }
      case R.SET_VRING_ADDR:
        this.#setVringAddr(msg);
        return false;
      case R.GET_VRING_BASE: {
        const [vring] = this.#state(msg);
        const index = msg.payload.getUint32(0, true);
        this.#stopVring(index);
        vring.closeFds();
        vring.enabled = false;
        const p = new Uint8Array(8);
        const v = new DataView(p.buffer);
        v.setUint32(0, index, true);
        v.setUint32(4, vring.base, true);
        this.#reply(msg.request, p);
        return true;
      }
      case R.SET_VRING_KICK:
      case R.SET_VRING_CALL:
      case R.SET_VRING_ERR:
        this.#setVringFd(msg);
        return false;
      case R.SET_VRING_ENABLE: {
        const [vring, num] = this.#state(msg);
        if ((this.#features & bit(Feature.PROTOCOL_FEATURES)) === 0n) {
          throw stateError(msg, 'SET_VRING_ENABLE needs VHOST_USER_F_PROTOCOL_FEATURES');
        }
        if (num > 1) throw vringError(msg, `SET_VRING_ENABLE takes 0 or 1, not ${num}`);
        vring.enabled = num === 1;
        const index = msg.payload.getUint32(0, true);
        if (vring.enabled) this.#maybeStart(index);
        else this.#stopVring(index);
        return false;
      }
      case R.GET_CONFIG: {
        const [offset, size] = this.#config(msg);
        const data = new Uint8Array(size);
        data.set(this.#device.readConfig(offset, size).subarray(0, size));
        const p = new Uint8Array(PayloadSize.CONFIG_HEADER + size);
        p.set(new Uint8Array(msg.payload.buffer, 0, PayloadSize.CONFIG_HEADER));
        p.set(data, PayloadSize.CONFIG_HEADER);
        this.#reply(msg.request, p);
        return true;
      }
      case R.SET_CONFIG: {
        const [offset, size] = this.#config(msg);
        this.#device.writeConfig(offset, new Uint8Array(msg.payload.buffer, PayloadSize.CONFIG_HEADER, size));
        return false;
      }
      default:
        throw new VhostUserError('ERR_VHOST_USER_MESSAGE', `${requestName(msg.request)} is not supported`, {
          request: msg.request,
        });
    }
  }

  #need(msg: Message, feature: bigint): void {
    if (!this.#has(feature)) {
      throw stateError(msg, `it needs protocol feature ${feature}, which was not negotiated`);
    }
  }

  /** A vring state payload (index, num): the vring and num. */
  #state(msg: Message): [Vring, number] {
    expectPayload(msg, PayloadSize.VRING_STATE, 0);
    return [this.#vring(msg, msg.payload.getUint32(0, true)), msg.payload.getUint32(4, true)];
  }

  #vring(msg: Message, index: number): Vring {
    const vring = this.#vrings[index];
    if (vring === undefined) {
      throw vringError(msg, `vring ${index} does not exist (the device has ${this.#vrings.length})`);
    }
    return vring;
  }

  #config(msg: Message): [number, number] {
    this.#need(msg, ProtocolFeature.CONFIG);
    if (msg.payload.byteLength < PayloadSize.CONFIG_HEADER) expectPayload(msg, PayloadSize.CONFIG_HEADER, 0);
    const offset = msg.payload.getUint32(0, true);
    const size = msg.payload.getUint32(4, true);
    if (size > MAX_CONFIG_SIZE || offset + size > MAX_CONFIG_SIZE) {
      throw new VhostUserError('ERR_VHOST_USER_MESSAGE', `config range ${offset} + ${size} passes ${MAX_CONFIG_SIZE} bytes`, {
        request: msg.request,
        address: offset,
        length: size,
      });
    }
    expectPayload(msg, PayloadSize.CONFIG_HEADER + size, 0);
    return [offset, size];
  }

  #setMemTable(msg: Message): void {
    if (msg.payload.byteLength < PayloadSize.MEM_TABLE_HEADER) expectPayload(msg, PayloadSize.MEM_TABLE_HEADER, 0);
    const n = msg.payload.getUint32(0, true);
    if (n === 0 || n > MAX_MEM_REGIONS) {
      throw new VhostUserError('ERR_VHOST_USER_MEM_TABLE', `a memory table has 1 to ${MAX_MEM_REGIONS} regions, not ${n}`, {
        request: msg.request,
      });
    }
    expectPayload(msg, PayloadSize.MEM_TABLE_HEADER + n * PayloadSize.MEM_REGION, n);
    const regions = Array.from({ length: n }, (_, i) =>
      readRegion(msg.payload, PayloadSize.MEM_TABLE_HEADER + i * PayloadSize.MEM_REGION),
    );
    const table = VhostUserMemoryTable.map(regions, msg.fds, this.#log, this.#tableOptions);
    // Running queues move to the new memory; every ring must still be in it, at the same guest
    // address (a queue reads its rings at the guest addresses it started with).
    try {
      for (const { queue, size, user } of this.#vrings) {
        if (queue === undefined || user === undefined) continue;
        const rings = translateRings(table, size, user);
        if (rings.desc !== queue.descTable || rings.avail !== queue.availRing || rings.used !== queue.usedRing) {
          throw new VhostUserError('ERR_VHOST_USER_RING_ADDRESS', `${requestName(msg.request)}: the rings of a running vring would move in guest memory`, {
            request: msg.request,
          });
        }
      }
      for (const vring of this.#vrings) vring.queue?.setMemory(table.memory);
    } catch (e) {
      table.close();
      throw asVhostUserError(e, msg.request);
    }
    this.#table?.close();
    this.#table = table;
  }

  /** Takes a table derived from the current one (they share mappings: the old one is dropped). */
  #useTable(table: VhostUserMemoryTable | undefined): void {
    this.#table = table;
    if (table !== undefined) for (const vring of this.#vrings) vring.queue?.setMemory(table.memory);
  }

  #setVringAddr(msg: Message): void {
    expectPayload(msg, PayloadSize.VRING_ADDR, 0);
    const p = msg.payload;
    const vring = this.#vring(msg, p.getUint32(0, true));
    const flags = p.getUint32(4, true);
    // VRING_F_LOG needs nothing of its own: used-ring writes are logged through the region
    // bitmaps like every other write to guest memory.
    if ((flags & ~VRING_F_LOG) !== 0) throw vringError(msg, `unknown vring flags ${hex(flags)}`);
    const user = { desc: p.getBigUint64(8, true), used: p.getBigUint64(16, true), avail: p.getBigUint64(24, true) };
    if (vring.size === 0) throw stateError(msg, 'SET_VRING_ADDR before SET_VRING_NUM');
    if (this.#table === undefined) throw stateError(msg, 'SET_VRING_ADDR before a memory table');
    if (vring.queue !== undefined) {
      // A running ring may only change its log flag (QEMU turns logging on for migration).
      const u = vring.user;
      if (u === undefined || u.desc !== user.desc || u.used !== user.used || u.avail !== user.avail) {
        throw stateError(msg, 'the rings of a running vring cannot move');
      }
      return;
    }
    translateRings(this.#table, vring.size, user);
    vring.user = user;
  }

  #setVringFd(msg: Message): void {
    expectPayload(msg, PayloadSize.U64, -1);
    const value = msg.payload.getBigUint64(0, true);
    if ((value & ~(VRING_IDX_MASK | VRING_NOFD_MASK)) !== 0n) {
      throw new VhostUserError('ERR_VHOST_USER_MESSAGE', `${requestName(msg.request)}: bad payload ${hex(value)}`, {
        request: msg.request,
      });
    }
    const index = Number(value & VRING_IDX_MASK);
    const vring = this.#vring(msg, index);
    const noFd = (value & VRING_NOFD_MASK) !== 0n;
    expectPayload(msg, PayloadSize.U64, noFd ? 0 : 1);
    const fd = noFd ? undefined : msg.fds.shift();
    if (msg.request === Request.SET_VRING_KICK) {
      if (fd === undefined) throw stateError(msg, 'vrings without a kick eventfd (polling) are not supported');
      this.#stopVring(index);
      vring.watcher?.close();
      vring.watcher = undefined;
      closeFd(vring.kickFd);
      vring.kickFd = fd;
      // Without protocol features a ring starts enabled with its kick fd.
      if ((this.#features & bit(Feature.PROTOCOL_FEATURES)) === 0n) vring.enabled = true;
      this.#maybeStart(index);
    } else if (msg.request === Request.SET_VRING_CALL) {
      closeFd(vring.callFd);
      vring.callFd = fd;
    } else {
      closeFd(vring.errFd);
      vring.errFd = fd;
    }
  }

  // ---- queues ----

  #maybeStart(index: number): void {
    const vring = this.#vrings[index];
    const table = this.#table;
    if (vring.queue !== undefined || !vring.enabled || vring.kickFd === undefined) return;
    if (vring.user === undefined || table === undefined) return;
    const rings = translateRings(table, vring.size, vring.user);
    let queue: SplitQueue;
    try {
      queue = new SplitQueue(table.memory, {
        size: vring.size,
        descTable: rings.desc,
        availRing: rings.avail,
        usedRing: rings.used,
        eventIdx: (this.#features & bit(Feature.RING_EVENT_IDX)) !== 0n,
        lastAvailIdx: vring.base,
      });
    } catch (e) {
      throw new VhostUserError('ERR_VHOST_USER_RING_ADDRESS', `vring ${index} cannot start: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const kickFd = vring.kickFd;
    vring.queue = queue;
    this.#device.startQueue(index, queue, vring);
    // A kick fd that is not an eventfd (a hostile front-end's pipe) fails the read: ERR_VHOST_USER_SYSTEM.
    vring.watcher = watch(kickFd, Readiness.READABLE, (errno) =>
      this.#guard(() => {
        eventfdRead(kickFd);
        this.#checkShared(index, queue);
        this.#kick(index);
        checkPolled(errno, `the kick fd of vring ${index}`); // after the kick that came with it
      }),
    );
    this.#kick(index);
  }

  /**
   * Guest RAM that QEMU maps privately (`memory-backend-memfd,share=off`) still arrives as a memfd,
   * but the guest's writes stay in QEMU's copy: here its rings read all zero, so it waits for
   * completions that never come. A driver writes a descriptor before it kicks; QEMU itself kicks
   * once when a ring starts, so a second kick that finds the descriptor table all zero and nothing
   * available is that (seen with QEMU 7.2 and Linux 6.1). Checked until the table is seen written.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_NOT_SHARED`
   */
  #checkShared(index: number, queue: SplitQueue): void {
    const kicks = this.#emptyKicks.get(queue) ?? 0;
    if (kicks < 0 || this.#table === undefined) return;
    const memory = this.#table.memory;
    const table = new Uint8Array(16 * queue.size);
    memory.readSlice(queue.descTable, table);
    const empty = table.every((b) => b === 0) && memory.readU16LE((queue.availRing + 2) as GuestAddress) === queue.lastAvailIdx;
    this.#emptyKicks.set(queue, empty ? kicks + 1 : -1);
    if (empty && kicks + 1 >= 2) {
      throw new VhostUserError(
        'ERR_VHOST_USER_NOT_SHARED',
        `vring ${index} was kicked ${kicks + 1} times, but its rings read all zero here: the guest's memory is not shared ` +
          'with this back-end (QEMU: give its memory backend share=on, as in -object memory-backend-memfd,id=mem,size=…,share=on)',
        { address: queue.descTable, length: table.length },
      );
    }
  }

  #kick(index: number): void {
    const vring = this.#vrings[index];
    const queue = vring.queue;
    if (queue === undefined) return;
    try {
      // The device left work: serve it again once the event loop has seen to everything else.
      if (this.#device.kick(index) === true) setImmediate(() => this.#guard(() => vring.queue === queue && this.#kick(index)));
    } catch (e) {
      this.#stopVring(index);
      if (vring.errFd !== undefined) eventfdWrite(vring.errFd);
      this.#options.onQueueError?.(index, e);
    }
    // SET_LOG_FD: the front-end is told after each batch that may have logged writes.
    if (this.#log.active && this.#logFd !== undefined) eventfdWrite(this.#logFd);
  }

  #stopVring(index: number): void {
    const vring = this.#vrings[index];
    vring.watcher?.close();
    vring.watcher = undefined;
    const queue = vring.queue;
    if (queue === undefined) return;
    vring.queue = undefined;
    this.#device.stopQueue(index);
    vring.base = queue.lastAvailIdx;
  }

  /** Stops and forgets every vring and the negotiated features (protocol features too, unless kept). */
  #resetState(keepProtocol = false): void {
    this.#vrings.forEach((vring, i) => {
      this.#stopVring(i);
      vring.closeFds();
      vring.size = vring.base = 0;
      vring.user = undefined;
      vring.enabled = false;
    });
    this.#features = 0n;
    if (!keepProtocol) this.#protocol = 0n;
    this.#log.setLogAll(false);
    this.#device.reset();
  }
}

/** A vring's ring addresses, in the front-end's virtual addresses. */
interface RingAddresses {
  desc: bigint;
  avail: bigint;
  used: bigint;
}

/** The guest addresses of a vring's rings; each must lie inside one region. */
function translateRings(table: VhostUserMemoryTable, size: number, user: RingAddresses) {
  return {
    desc: table.translate(user.desc, 16 * size),
    avail: table.translate(user.avail, 6 + 2 * size),
    used: table.translate(user.used, 6 + 8 * size),
  };
}

/** A watcher's errno: libuv stopped polling the fd, so whatever it serves is over. */
function checkPolled(errno: number, what: string): void {
  if (errno !== 0) {
    throw new VhostUserError('ERR_VHOST_USER_SYSTEM', `polling ${what} failed with ${errnoName(errno)}`, {
      errno: errnoName(errno),
      syscall: 'epoll_wait',
    });
  }
}

function safeU64(msg: Message, at: number, what: string): number {
  const v = msg.payload.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VhostUserError('ERR_VHOST_USER_MESSAGE', `${requestName(msg.request)}: ${what} ${hex(v)} is too large`, {
      request: msg.request,
    });
  }
  return Number(v);
}

function stateError(msg: Message, why: string): VhostUserError {
  return new VhostUserError('ERR_VHOST_USER_STATE', `${requestName(msg.request)}: ${why}`, { request: msg.request });
}

function vringError(msg: Message, why: string): VhostUserError {
  return new VhostUserError('ERR_VHOST_USER_VRING', `${requestName(msg.request)}: ${why}`, { request: msg.request });
}

function asVhostUserError(e: unknown, request?: number): VhostUserError {
  if (e instanceof VhostUserError) return e;
  const what = request === undefined ? '' : `${requestName(request)}: `;
  const code = e instanceof GuestmemError ? ` (${e.code})` : '';
  return new VhostUserError('ERR_VHOST_USER_STATE', `${what}${(e as Error)?.message ?? String(e)}${code}`, {
    request,
    cause: e,
  });
}
