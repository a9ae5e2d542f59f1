/**
 * The vhost-user transport's system calls, from guestmem's native addon (native/guestmem.c):
 * AF_UNIX sockets, messages with SCM_RIGHTS descriptors, eventfds and readiness watchers. Every
 * descriptor made here is non-blocking and close-on-exec. Failures become
 * {@link VhostUserError}s carrying the errno's name.
 */
import { closeSync } from 'node:fs';
import { getSystemErrorMap } from 'node:util';
import { native as binding } from '../mmap/native.js';
import { VhostUserError } from './errors.js';

/** What one {@link recvMsg} got. */
export interface Received {
  /** Bytes read into the buffer; 0 at end of stream. */
  readonly bytes: number;
  /** Descriptors that came with them, now owned by the caller. */
  readonly fds: number[];
  /** The peer sent more descriptors than asked for: the kernel dropped the rest. */
  readonly truncated: boolean;
}

/** An active readiness watcher, as the addon hands it out. */
export interface WatchHandle {
  readonly __watch: unique symbol;
}

interface TransportBinding {
  unixListen(path: string, backlog: number): number;
  unixConnect(path: string): number;
  accept(fd: number): number;
  socketpair(): [number, number];
  adoptSocket(fd: number): boolean;
  recvMsg(fd: number, bytes: Uint8Array, maxFds: number): Received | null;
  sendMsg(fd: number, bytes: Uint8Array, fds: readonly number[]): number;
  eventfd(): number;
  eventfdRead(fd: number): bigint | null;
  eventfdWrite(fd: number, value: number): void;
  watch(fd: number, events: number, callback: (errno: number, events: number) => void): WatchHandle;
  unwatch(handle: WatchHandle): void;
  getSeals(fd: number): number;
  readonly F_SEAL_SHRINK: number;
}

const native = binding as unknown as TransportBinding;
const errors = getSystemErrorMap();

/** The most descriptors one message may carry here. */
export const MAX_FDS = 32;

/** Readiness events of {@link watch}, as libuv numbers them. */
export const Readiness = Object.freeze({
  /** Data (or a connection, or end of stream) is waiting. */
  READABLE: 1,
  /** A write would not block. */
  WRITABLE: 2,
  /** The peer hung up. */
  DISCONNECT: 4,
});

/** The errno name (`'EAGAIN'`) of a positive errno number. */
export function errnoName(errno: number): string {
  return errors.get(-errno)?.[0] ?? `errno ${errno}`;
}

function sys<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VhostUserError) throw e; // an argument check of this module
    const err = e as { errno?: unknown; syscall?: unknown; message?: unknown };
    if (typeof err.errno === 'number') {
      const name = errnoName(err.errno);
      const syscall = typeof err.syscall === 'string' ? err.syscall : undefined;
      throw new VhostUserError('ERR_VHOST_USER_SYSTEM', `cannot ${what}: ${syscall} failed with ${name}`, {
        errno: name,
        syscall,
        cause: e,
      });
    }
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `cannot ${what}: ${String(err.message ?? e)}`, { cause: e });
  }
}

function checkFd(fd: unknown): number {
  if (Number.isInteger(fd) && (fd as number) >= 0 && (fd as number) <= 0x7fff_ffff) return fd as number;
  throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `fd must be a non-negative int32, got ${String(fd)}`);
}

function checkBytes(bytes: unknown): Uint8Array {
  if (bytes instanceof Uint8Array && bytes.length > 0) return bytes;
  throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', 'bytes must be a non-empty Uint8Array');
}

/** An AF_UNIX path fits `sun_path` (108 bytes with its NUL, less one for the kernel's checks). */
function checkPath(path: unknown): string {
  if (typeof path === 'string' && path.length > 0 && Buffer.byteLength(path) <= 106 && !path.includes('\0')) return path;
  throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `socket path must be 1 to 106 bytes without NUL: ${String(path)}`);
}

/** A listening AF_UNIX stream socket bound to `path` (which must not exist yet). */
export function listenUnix(path: string, backlog = 16): number {
  return sys(`listen on ${path}`, () => native.unixListen(checkPath(path), backlog));
}

/** A socket connected to the AF_UNIX stream socket at `path`. */
export function connectUnix(path: string): number {
  return sys(`connect to ${path}`, () => native.unixConnect(checkPath(path)));
}

/** The next waiting connection on a listening socket, or undefined when none waits. */
export function accept(fd: number): number | undefined {
  const c = sys('accept a connection', () => native.accept(checkFd(fd)));
  return c < 0 ? undefined : c;
}

/** A connected pair of AF_UNIX stream sockets (an in-process frontend and backend, say). */
export function socketPair(): [number, number] {
  return sys('create a socket pair', () => native.socketpair());
}

/**
 * Takes an inherited descriptor (`--fd 3`) as a vhost-user socket: it must be an AF_UNIX stream
 * socket, listening or connected; it becomes non-blocking and close-on-exec.
 *
 * @returns whether it is a listening socket.
 */
export function adoptSocket(fd: number): boolean {
  return sys(`adopt fd ${fd} as a socket`, () => native.adoptSocket(checkFd(fd)));
}

/**
 * Reads what is waiting on a socket into `bytes`, with up to `maxFds` descriptors; undefined
 * when nothing is waiting.
 */
export function recvMsg(fd: number, bytes: Uint8Array, maxFds: number): Received | undefined {
  if (!Number.isInteger(maxFds) || maxFds < 0 || maxFds > MAX_FDS) {
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `maxFds must be an integer in [0, ${MAX_FDS}]`);
  }
  return sys('receive a message', () => native.recvMsg(checkFd(fd), checkBytes(bytes), maxFds)) ?? undefined;
}

/** Sends `bytes` with `fds` attached; returns the bytes sent (a short count on a full socket). */
export function sendMsg(fd: number, bytes: Uint8Array, fds: readonly number[] = []): number {
  if (!Array.isArray(fds) || fds.length > MAX_FDS) {
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `fds must be an array of at most ${MAX_FDS} descriptors`);
  }
  return sys('send a message', () => native.sendMsg(checkFd(fd), checkBytes(bytes), fds.map(checkFd)));
}

/** A new non-blocking eventfd with a zero counter. */
export function eventfd(): number {
  return sys('create an eventfd', () => native.eventfd());
}

/**
 * Takes an eventfd's counter (resetting it): undefined when it was zero. Never blocks: a blocking
 * descriptor (a peer's) is made non-blocking first, for the peer too, since they share its flags.
 */
export function eventfdRead(fd: number): bigint | undefined {
  return sys('read an eventfd', () => native.eventfdRead(checkFd(fd))) ?? undefined;
}

/**
 * Adds `value` (default 1) to an eventfd's counter: signals whoever waits on it. Never blocks
 * (as {@link eventfdRead}): a counter that would overflow fails with `EAGAIN`.
 */
export function eventfdWrite(fd: number, value = 1): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', `value must be a positive safe integer, got ${String(value)}`);
  }
  sys('signal an eventfd', () => native.eventfdWrite(checkFd(fd), value));
}

/**
 * Calls `callback` on the event loop whenever `fd` is ready (no busy polling, nothing blocks),
 * until the returned watcher is closed. The watcher polls a duplicate of `fd`, so closing `fd`
 * first is harmless; an open watcher keeps the process alive, like a socket. A callback that
 * throws raises an uncaught exception, as an event listener would.
 *
 * @param events - {@link Readiness} bits. `callback(errno, events)` gets a non-zero errno when
 *   polling failed (events is 0 then; libuv reports `EBADF` for an fd in error): the watcher
 *   stops polling after that call, and only needs closing.
 */
export function watch(fd: number, events: number, callback: (errno: number, events: number) => void): FdWatcher {
  if (!Number.isInteger(events) || events < 1 || events > 7) {
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', 'events must be a non-empty set of Readiness bits');
  }
  if (typeof callback !== 'function') {
    throw new VhostUserError('ERR_VHOST_USER_INVALID_ARG', 'callback must be a function');
  }
  return new FdWatcher(sys(`watch fd ${fd}`, () => native.watch(checkFd(fd), events, callback)));
}

/** A readiness watcher made by {@link watch}. */
export class FdWatcher implements Disposable {
  #handle: WatchHandle | undefined;

  /** @internal */
  constructor(handle: WatchHandle) {
    this.#handle = handle;
  }

  /** True until {@link FdWatcher.close}. */
  get active(): boolean {
    return this.#handle !== undefined;
  }

  /** Stops watching; no callback runs after this returns. Idempotent, safe in the callback. */
  close(): void {
    if (this.#handle === undefined) return;
    native.unwatch(this.#handle);
    this.#handle = undefined;
  }

  /** Same as {@link FdWatcher.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * True when `fd` is a memfd sealed against shrinking (`F_SEAL_SHRINK`): no one can truncate it
 * under a mapping, which would raise SIGBUS in this process at the next access to the lost pages.
 * A regular file cannot be sealed: false.
 */
export function shrinkSealed(fd: number): boolean {
  return (sys(`read the seals of fd ${fd}`, () => native.getSeals(checkFd(fd))) & native.F_SEAL_SHRINK) !== 0;
}

/** Closes a descriptor, ignoring EBADF (used on cleanup paths that must not throw). */
export function closeFd(fd: number | undefined): void {
  if (fd === undefined || fd < 0) return;
  try {
    closeSync(fd);
  } catch {}
}
