import type { Duplex } from 'node:stream';
import { MigrateError } from './errors.js';
import { FrameReader, type FrameSink } from './wire.js';

/** Corked bytes that make {@link Channel.write} send them. */
const FLUSH_BYTES = 256 << 10;

/**
 * One side's end of the migration stream: frames in through a {@link FrameReader}, bytes out
 * with backpressure. The first failure (the stream's end, error or close, a frame the sink
 * refuses, or {@link Channel.fail}) is kept: later writes throw it, and `onFail` hears it once.
 */
export class Channel {
  readonly #stream: Duplex;
  readonly #reader: FrameReader;
  #failure: MigrateError | undefined;
  #done = false;
  readonly #onFail: (e: MigrateError) => void;
  #wake: (() => void) | undefined;
  #corked = false;
  /** Bytes written since the stream was corked. */
  #pending = 0;

  constructor(stream: Duplex, sink: FrameSink, onFail: (e: MigrateError) => void) {
    this.#stream = stream;
    this.#reader = new FrameReader(sink);
    this.#onFail = onFail;
    stream.on('data', (chunk: Buffer) => {
      if (this.#failure !== undefined || this.#done) return;
      try {
        this.#reader.push(chunk);
      } catch (e) {
        this.fail(e instanceof MigrateError ? e : new MigrateError('ERR_MIGRATE_PROTOCOL', String(e), { cause: e }));
      }
    });
    const closed = (why: string, cause?: unknown) => () =>
      this.fail(new MigrateError('ERR_MIGRATE_CLOSED', `the migration stream ${why} before the migration completed`, { cause }));
    stream.on('end', closed('ended'));
    stream.on('close', closed('closed'));
    stream.on('error', (e) => closed(`failed (${(e as Error).message})`, e)());
    stream.on('drain', () => this.#wake?.());
  }

  /** The failure that ended the channel, if any. */
  get failure(): MigrateError | undefined {
    return this.#failure;
  }

  /** Ends the channel with `error` (the first failure wins); the stream is left to the caller. */
  fail(error: MigrateError): void {
    if (this.#failure !== undefined || this.#done) return;
    this.#failure = error;
    this.#wake?.();
    this.#onFail(error);
  }

  /** The migration is over: later stream events are not failures. */
  finish(): void {
    this.#done = true;
  }

  /**
   * Writes `chunks` in order, corked: they go out together (one writev on a socket) once
   * {@link FLUSH_BYTES} are pending or at {@link Channel.flush}, so that a round of scattered
   * pages does not cost a system call per page. Resolves when the stream can take more.
   *
   * @throws the channel's failure
   */
  async write(...chunks: Uint8Array[]): Promise<void> {
    if (!this.#corked) {
      this.#stream.cork();
      this.#corked = true;
    }
    for (const c of chunks) {
      if (this.#stream.destroyed) this.fail(new MigrateError('ERR_MIGRATE_CLOSED', 'the migration stream was destroyed before the migration completed'));
      if (this.#failure !== undefined) throw this.#failure;
      this.#stream.write(c);
      this.#pending += c.length;
    }
    if (this.#pending >= FLUSH_BYTES) await this.flush();
  }

  /** Sends what is corked and waits until the stream can take more. @throws the channel's failure */
  async flush(): Promise<void> {
    if (this.#corked) {
      this.#corked = false;
      this.#pending = 0;
      this.#stream.uncork();
    }
    while (this.#failure === undefined && this.#stream.writableNeedDrain) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Writes `chunks` without waiting (a last word before giving up); never throws. */
  tryWrite(...chunks: Uint8Array[]): void {
    try {
      for (const c of chunks) if (!this.#stream.destroyed && this.#stream.writable) this.#stream.write(c);
    } catch {
      // The stream is already gone: the peer learns from its closing.
    }
  }
}
