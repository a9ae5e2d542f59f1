/**
 * vhost-user message framing on a non-blocking socket: headers, payloads and the descriptors that
 * come with them, read as they arrive (a message may arrive in pieces), and replies.
 */
import { hex } from '../errors.js';
import { VhostUserError } from './errors.js';
import {
  FLAG_REPLY,
  FLAG_VERSION_MASK,
  HEADER_SIZE,
  MAX_MESSAGE_FDS,
  MAX_PAYLOAD,
  requestName,
  VERSION,
} from './protocol.js';
import { closeFd, recvMsg, sendMsg } from './sys.js';

/** One received message; whoever handles it takes the descriptors it keeps out of `fds`. */
export interface Message {
  readonly request: number;
  readonly flags: number;
  readonly payload: DataView;
  readonly fds: number[];
}

/**
 * Reads front-end messages off a socket. {@link MessageReader.next} returns each message once
 * it is complete, whatever pieces it came in.
 */
export class MessageReader {
  readonly #fd: number;
  readonly #header = new Uint8Array(HEADER_SIZE);
  readonly #headerView = new DataView(this.#header.buffer);
  readonly #payload = new Uint8Array(MAX_PAYLOAD);
  /** Bytes of the header (while `#size` is -1) or of the payload read so far. */
  #got = 0;
  /** The payload size of the message being read, -1 while its header is. */
  #size = -1;
  #fds: number[] = [];

  constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * The next complete message; undefined when the rest has not arrived yet; null when the
   * front-end hung up between messages.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_MESSAGE` for bad flags, an oversized payload or a
   *   hang-up inside a message; `ERR_VHOST_USER_FDS` for more than 8 descriptors;
   *   `ERR_VHOST_USER_SYSTEM` when the socket fails.
   */
  next(): Message | undefined | null {
    for (;;) {
      const inHeader = this.#size < 0;
      if (!inHeader && this.#got === this.#size) return this.#take();
      const target = inHeader ? this.#header.subarray(this.#got) : this.#payload.subarray(this.#got, this.#size);
      const r = recvMsg(this.#fd, target, MAX_MESSAGE_FDS - this.#fds.length);
      if (r === undefined) return undefined;
      this.#fds.push(...r.fds);
      if (r.truncated) {
        throw new VhostUserError('ERR_VHOST_USER_FDS', `a message came with more than ${MAX_MESSAGE_FDS} fds`);
      }
      if (r.bytes === 0) {
        if (this.#got === 0 && inHeader) return null;
        throw new VhostUserError('ERR_VHOST_USER_MESSAGE', 'the front-end hung up in the middle of a message');
      }
      this.#got += r.bytes;
      if (inHeader && this.#got === HEADER_SIZE) this.#startPayload();
    }
  }

  /** Closes the descriptors of a message that was not completed. */
  close(): void {
    for (const fd of this.#fds) closeFd(fd);
    this.#fds = [];
  }

  #startPayload(): void {
    const request = this.#headerView.getUint32(0, true);
    const flags = this.#headerView.getUint32(4, true);
    const size = this.#headerView.getUint32(8, true);
    if ((flags & FLAG_VERSION_MASK) !== VERSION || (flags & FLAG_REPLY) !== 0) {
      throw new VhostUserError('ERR_VHOST_USER_MESSAGE', `${requestName(request)}: bad flags ${hex(flags)}`, { request });
    }
    if (size > MAX_PAYLOAD) {
      throw new VhostUserError('ERR_VHOST_USER_MESSAGE', `${requestName(request)}: payload of ${size} bytes is too large`, {
        request,
        length: size,
      });
    }
    this.#size = size;
    this.#got = 0;
  }

  #take(): Message {
    const msg: Message = {
      request: this.#headerView.getUint32(0, true),
      flags: this.#headerView.getUint32(4, true),
      payload: new DataView(this.#payload.slice(0, this.#size).buffer),
      fds: this.#fds,
    };
    this.#fds = [];
    this.#size = -1;
    this.#got = 0;
    return msg;
  }
}

/**
 * Sends the back-end's reply to `request`.
 *
 * @throws {VhostUserError} `ERR_VHOST_USER_SYSTEM` when the socket fails or the reply does not fit.
 */
export function sendReply(fd: number, request: number, payload: Uint8Array): void {
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, VERSION | FLAG_REPLY, true);
  v.setUint32(8, payload.length, true);
  bytes.set(payload, HEADER_SIZE);
  if (sendMsg(fd, bytes) !== bytes.length) {
    throw new VhostUserError('ERR_VHOST_USER_SYSTEM', `the reply to ${requestName(request)} did not fit the socket`, {
      request,
      errno: 'EAGAIN',
      syscall: 'sendmsg',
    });
  }
}

/**
 * Checks a message's payload size and descriptor count (`fds` -1: any, checked later).
 *
 * @throws {VhostUserError} `ERR_VHOST_USER_MESSAGE`, `ERR_VHOST_USER_FDS`
 */
export function expectPayload(msg: Message, size: number, fds: number): void {
  if (msg.payload.byteLength !== size) {
    throw new VhostUserError(
      'ERR_VHOST_USER_MESSAGE',
      `${requestName(msg.request)}: payload of ${msg.payload.byteLength} bytes, expected ${size}`,
      { request: msg.request, length: msg.payload.byteLength, expected: size },
    );
  }
  if (fds >= 0 && msg.fds.length !== fds) {
    throw new VhostUserError('ERR_VHOST_USER_FDS', `${requestName(msg.request)}: ${msg.fds.length} fds, expected ${fds}`, {
      request: msg.request,
      length: msg.fds.length,
      expected: fds,
    });
  }
}
