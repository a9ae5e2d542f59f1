/**
 * A worker thread that runs a vCPU shared with it (`workerData`) until it is closed, dropping
 * the MMIO exits it meets (guest writes to a read-only slot), and reports what ended the run:
 * `{ ended, mmio, error? }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { KvmVcpu } from '../vcpu.js';

const cpu = KvmVcpu.fromShared(workerData);
let mmio = 0;
let ended = 'closed';
let error: string | undefined;
try {
  for (;;) {
    const exit = cpu.run();
    if (exit.reason === 'closed') break;
    if (exit.reason === 'mmio') {
      mmio++;
      continue;
    }
    ended = exit.reason;
    break;
  }
} catch (e) {
  ended = 'error';
  error = (e as { code?: string }).code ?? String(e);
}
parentPort?.postMessage({ ended, mmio, error });
