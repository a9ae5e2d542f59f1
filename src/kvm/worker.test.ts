import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { GuestAddress } from '../address/address.js';
import { MemoryManager } from '../manager/manager.js';
import { COUNT_FOREVER, IS_PVM, mmapBacking, startReal, vmOrSkip } from './test-support/guests.js';
import { pagesOf } from './test-support/layout.js';

const WORKER = new URL('./test-support/vcpu-worker.js', import.meta.url);
const COUNTER = 0x9000;
const CODE = 0x1000;

interface WorkerResult {
  ended: string;
  mmio: number;
  error?: string;
}

function start(workerData: unknown): { worker: Worker; result: Promise<WorkerResult> } {
  const worker = new Worker(WORKER, { workerData });
  const result = new Promise<WorkerResult>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { worker, result };
}

test('a vCPU in a worker: the main thread harvests and changes the layout while it runs, loses no dirty page, and closing the VM ends the run', async (t) => {
  const vm = vmOrSkip(t);
  if (vm === undefined) return;
  t.after(() => vm.close());
  // Code in 'low'; the guest's counter in 'scratch', which the rounds make read-only and back.
  const manager = new MemoryManager();
  manager.addRam({ name: 'low', start: GuestAddress(0), length: 0x8000, backing: mmapBacking(0x8000) });
  const scratch = manager.addRam({ name: 'scratch', start: GuestAddress(0x8000), length: 0x8000, backing: mmapBacking(0x8000) });
  const mem = () => manager.memory();
  const code = new Uint8Array(COUNT_FOREVER);
  code[3] = COUNTER & 0xff; // the inc's address operand: 0x9000
  code[4] = COUNTER >> 8;
  mem().writeSlice(GuestAddress(CODE), code);
  vm.attach(manager);
  vm.setDirtyLogging(true);
  const cpu = vm.createVcpu();
  startReal(cpu, CODE);

  const a = start(cpu.share());
  t.after(() => a.worker.terminate());
  const counter = () => mem().readU32LE(GuestAddress(COUNTER));
  for (let i = 0; i < 500 && counter() === 0; i++) await sleep(10);
  assert.ok(counter() > 0, 'the guest runs in the worker');
  // The baseline, once the guest ran: its first fetch of the code page may be logged (the rig's KVM does).
  vm.harvestDirty();

  // A second thread cannot run the same vCPU meanwhile.
  const b = start(cpu.share());
  assert.deepEqual(await b.result, { ended: 'error', mmio: 0, error: 'ERR_KVM_VCPU_BUSY' });

  let before = counter();
  let guestRounds = 0;
  const ROUNDS = 6;
  for (let k = 1; k <= ROUNDS; k++) {
    await sleep(20);
    // The layout changes under the running vCPU: the counter's slot is removed and re-added
    // read-only. Its log must be merged before it goes, or the writes before this are lost.
    manager.setVisibility(scratch, 'read-only');
    const now = counter();
    const device = 0x2000 + 0x1000 * (k % 4);
    mem().writeU32LE(GuestAddress(device), k); // a device writes meanwhile
    const harvested = pagesOf(vm.harvestDirty());
    // Each round deletes a slot: KVM proper then logs the code page the guest only fetches
    // (measured in the nested rig); PVM never does (IS_PVM).
    if (IS_PVM) assert.ok(!harvested.includes(CODE), `round ${k}: the code page is not dirty`);
    const pages = harvested.filter((p) => p !== CODE);
    const expected = now !== before ? [device, COUNTER].sort((x, y) => x - y) : [device];
    if (now !== before) guestRounds++;
    assert.deepEqual(pages, expected, `round ${k}: counter ${before} -> ${now}`);
    manager.setVisibility(scratch, 'read-write');
    before = counter();
  }
  assert.ok(guestRounds > 0, 'the guest wrote during the rounds');

  vm.close();
  const ended = await a.result;
  assert.equal(ended.ended, 'closed', 'the run ended because the VM was closed');
  assert.ok(ended.mmio > 0, 'the guest met the read-only slot');
  assert.deepEqual(cpu.run(), { reason: 'closed' });
});
