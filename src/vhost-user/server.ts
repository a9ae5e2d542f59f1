import { lstatSync, unlinkSync } from 'node:fs';
import type { VhostUserDevice } from './device.js';
import { VhostUserError } from './errors.js';
import { checkSessionOptions, type SessionOptions, VhostUserSession } from './session.js';
import { accept, adoptSocket, closeFd, connectUnix, type FdWatcher, listenUnix, Readiness, watch } from './sys.js';

/**
 * Unlinks the socket file at `path` when nobody listens on it any more (a connection is refused):
 * what a back-end that died leaves. One that accepts a connection belongs to a live back-end,
 * which keeps it; taking the path over would leave that back-end unreachable.
 */
function removeStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket()) return; // listening there fails with EADDRINUSE
  } catch {
    return; // nothing there
  }
  let fd: number;
  try {
    fd = connectUnix(path);
  } catch (e) {
    if ((e as VhostUserError).errno === 'ECONNREFUSED') unlinkSync(path);
    return;
  }
  closeFd(fd);
  throw new VhostUserError('ERR_VHOST_USER_SYSTEM', `cannot listen on ${path}: a live back-end is serving it`, {
    errno: 'EADDRINUSE',
    syscall: 'connect',
  });
}

/**
 * Options of a {@link VhostUserServer}; `protocolFeatures`, `allowUnsealedMemory`, `maxMemory`
 * and `negotiationTimeout` go to each session, as {@link SessionOptions} describes them.
 */
export interface ServerOptions extends Pick<SessionOptions, 'allowUnsealedMemory' | 'maxMemory' | 'negotiationTimeout' | 'onMessage'> {
  /** A front-end connected. */
  onConnect?: ((session: VhostUserSession) => void) | undefined;
  /** A session ended: `error` says why, undefined when the front-end hung up cleanly. */
  onDisconnect?: ((error: VhostUserError | undefined) => void) | undefined;
  /** A queue stopped because the device failed on it. */
  onQueueError?: ((index: number, error: unknown) => void) | undefined;
  /** As {@link SessionOptions.protocolFeatures}. */
  protocolFeatures?: bigint | undefined;
}

/**
 * A vhost-user back-end listening on an AF_UNIX socket: serves one front-end at a time with one
 * device (further front-ends wait in the backlog), and after a session ends, for whatever reason,
 * resets the device and accepts the next. A connection that does not open its session (SET_OWNER)
 * within `negotiationTimeout` is dropped, so an idle one cannot keep the next front-end waiting.
 *
 * @example
 * import assert from 'node:assert/strict';
 * import { ftruncateSync, mkdtempSync, openSync } from 'node:fs';
 * import { tmpdir } from 'node:os';
 * import { FdDisk, VirtioBlk } from 'guestmem/virtio';
 * import { VhostUserBlkDevice, VhostUserServer } from 'guestmem/vhost-user';
 *
 * const dir = mkdtempSync(`${tmpdir()}/vub-`);
 * const image = openSync(`${dir}/disk.img`, 'w+');
 * ftruncateSync(image, 1 << 20);
 * const device = new VhostUserBlkDevice(new VirtioBlk(new FdDisk(image), { id: 'disk0' }), { queues: 2 });
 * const server = VhostUserServer.listen(`${dir}/vub.sock`, device, {
 *   onConnect: (session) => console.log('a front-end connected'),
 *   onDisconnect: (error) => console.log(error === undefined ? 'it hung up' : `dropped: ${error.code}`),
 * });
 * // Now: qemu-system-x86_64 -object memory-backend-memfd,id=mem,size=1G,share=on -M pc,memory-backend=mem
 * //   -chardev socket,id=vub,path=<dir>/vub.sock -device vhost-user-blk-pci,chardev=vub,num-queues=2
 * assert.throws(() => VhostUserServer.listen(`${dir}/vub.sock`, device), { code: 'ERR_VHOST_USER_SYSTEM', errno: 'EADDRINUSE' });
 * server.close();
 */
export class VhostUserServer implements Disposable {
  readonly #device: VhostUserDevice;
  readonly #options: ServerOptions;
  readonly #listenFd: number | undefined;
  readonly #path: string | undefined;
  #watcher: FdWatcher | undefined;
  #session: VhostUserSession | undefined;
  #closed = false;

  private constructor(device: VhostUserDevice, listenFd: number | undefined, path: string | undefined, options: ServerOptions) {
    this.#device = device;
    this.#listenFd = listenFd;
    this.#path = path;
    this.#options = options;
  }

  /**
   * Listens on `path`. A stale socket file there (nobody accepts on it) is replaced; a socket that
   * a live back-end serves, or any other file, is an error.
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_SYSTEM` (`EADDRINUSE` for a path another back-end
   *   serves, or that is not a socket);
   *   `ERR_VHOST_USER_INVALID_ARG` for session options out of range.
   */
  static listen(path: string, device: VhostUserDevice, options: ServerOptions = {}): VhostUserServer {
    checkSessionOptions(options);
    removeStaleSocket(path);
    const server = new VhostUserServer(device, listenUnix(path), path, options);
    server.#listen();
    return server;
  }

  /**
   * Serves an inherited socket: a listening one (accepting as {@link listen} does) or one
   * already connected to a front-end (served once).
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_SYSTEM` (`ENOTSOCK`, `EPROTOTYPE`) for an fd that
   *   is not an AF_UNIX stream socket; `ERR_VHOST_USER_INVALID_ARG` for session options out of
   *   range.
   */
  static adopt(fd: number, device: VhostUserDevice, options: ServerOptions = {}): VhostUserServer {
    checkSessionOptions(options);
    if (adoptSocket(fd)) {
      const server = new VhostUserServer(device, fd, undefined, options);
      server.#listen();
      return server;
    }
    const server = new VhostUserServer(device, undefined, undefined, options);
    server.#serve(fd);
    return server;
  }

  /** The session being served, if any. */
  get session(): VhostUserSession | undefined {
    return this.#session;
  }

  /** Stops listening and ends the current session. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watcher?.close();
    this.#session?.close(new VhostUserError('ERR_VHOST_USER_CLOSED', 'the server was closed'));
    closeFd(this.#listenFd);
    if (this.#path !== undefined) {
      try {
        unlinkSync(this.#path);
      } catch {}
    }
  }

  /** Same as {@link VhostUserServer.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #listen(): void {
    if (this.#listenFd === undefined || this.#closed) return;
    const listenFd = this.#listenFd;
    this.#watcher = watch(listenFd, Readiness.READABLE, () => {
      let fd: number | undefined;
      try {
        fd = accept(listenFd);
      } catch (e) {
        // Out of fds, say: pause rather than spin on a listener that stays readable.
        this.#watcher?.close();
        this.#watcher = undefined;
        this.#options.onDisconnect?.(e as VhostUserError);
        setTimeout(() => this.#listen(), 100);
        return;
      }
      if (fd === undefined) return;
      this.#watcher?.close();
      this.#watcher = undefined;
      this.#serve(fd);
    });
  }

  #serve(fd: number): void {
    let session: VhostUserSession;
    try {
      session = this.#newSession(fd);
    } catch (e) {
      this.#options.onDisconnect?.(e as VhostUserError);
      this.#listen();
      return;
    }
    this.#session = session;
    this.#options.onConnect?.(session);
  }

  /** A session on `fd`; when it ends, the server listens again. */
  #newSession(fd: number): VhostUserSession {
    return new VhostUserSession(fd, this.#device, {
      onQueueError: this.#options.onQueueError,
      protocolFeatures: this.#options.protocolFeatures,
      allowUnsealedMemory: this.#options.allowUnsealedMemory,
      maxMemory: this.#options.maxMemory,
      negotiationTimeout: this.#options.negotiationTimeout,
      onMessage: this.#options.onMessage,
      onClose: (error) => {
        this.#session = undefined;
        this.#options.onDisconnect?.(error);
        this.#listen();
      },
    });
  }
}
