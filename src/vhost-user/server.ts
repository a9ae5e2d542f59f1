import { lstatSync, unlinkSync } from 'node:fs';
import type { VhostUserDevice } from './device.js';
import { VhostUserError } from './errors.js';
import { checkSessionOptions, type SessionOptions, VhostUserSession } from './session.js';
import { accept, adoptSocket, closeFd, type FdWatcher, listenUnix, Readiness, watch } from './sys.js';

/**
 * Options of a {@link VhostUserServer}; `protocolFeatures`, `allowUnsealedMemory`, `maxMemory`
 * and `negotiationTimeout` go to each session, as {@link SessionOptions} describes them.
 */
export interface ServerOptions extends Pick<SessionOptions, 'allowUnsealedMemory' | 'maxMemory' | 'negotiationTimeout'> {
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
   * Listens on `path` (a stale socket file there is replaced; any other file is an error).
   *
   * @throws {VhostUserError} `ERR_VHOST_USER_SYSTEM` (`EADDRINUSE` for a path that is not a socket);
   *   `ERR_VHOST_USER_INVALID_ARG` for session options out of range.
   */
  static listen(path: string, device: VhostUserDevice, options: ServerOptions = {}): VhostUserServer {
    checkSessionOptions(options);
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
    } catch {}
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
      onClose: (error) => {
        this.#session = undefined;
        this.#options.onDisconnect?.(error);
        this.#listen();
      },
    });
  }
}
