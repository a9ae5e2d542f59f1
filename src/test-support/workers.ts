import { Worker } from 'node:worker_threads';

/** A group of workers started by {@link startWorkers}. */
export interface WorkerGroup {
  /** How many have not exited yet (an errored worker counts as exited, so that loops end). */
  running(): number;
  /** Settles once every worker is online, or as soon as one has exited. */
  readonly online: Promise<unknown>;
  /** Resolves once every worker has exited with code 0; rejects on an error or another code. */
  readonly exited: Promise<void>;
}

/**
 * Starts one worker of `url` per element of `data` (its `workerData`); `onMessage(i, message)`
 * gets what worker `i` posts. Made for stress tests whose main thread works until the workers end.
 */
export function startWorkers<T>(url: URL, data: readonly T[], onMessage: (i: number, message: unknown) => void): WorkerGroup {
  let running = data.length;
  const workers = data.map((workerData, i) => {
    const w = new Worker(url, { workerData });
    w.on('message', (m: unknown) => onMessage(i, m));
    const online = new Promise((resolve) => w.once('online', resolve));
    const exited = new Promise<void>((resolve, reject) => {
      w.once('error', reject);
      w.once('exit', (code) => {
        running--;
        if (code === 0) resolve();
        else reject(new Error(`worker ${i} exited with ${code}`));
      });
    });
    return { online, exited };
  });
  const exited = Promise.all(workers.map((w) => w.exited)).then(() => {});
  // Awaited later; a handler now keeps an early failure from going unhandled.
  exited.catch(() => {});
  return { running: () => running, online: Promise.race([Promise.all(workers.map((w) => w.online)), exited]), exited };
}
