import assert from 'node:assert/strict';
import { closeSync } from 'node:fs';
import { test } from 'node:test';
import { MmapBackend } from '../mmap/backend.js';
import { kvmFdOrSkip } from './test-support/guests.js';
import { kvm, MemFlags } from './native.js';

test('the addon refuses a dirty log shorter than the slot it is read for (the kernel would write past it)', (t) => {
  const sys = kvmFdOrSkip(t);
  if (sys === undefined) return;
  const vm = kvm.kvmCreateVm(sys);
  const memory = MmapBackend.anonymous(128 * 4096);
  t.after(() => {
    closeSync(vm);
    closeSync(sys);
    memory.close();
  });
  kvm.kvmSetMemoryRegion(vm, 0, MemFlags.LOG_DIRTY_PAGES, 0, 128 * 4096, memory.views().buffer as ArrayBuffer, 0);
  // 128 pages need two words; the second word of `words` stands guard behind a one-word log.
  const words = new BigUint64Array(2).fill(0x5a5a5a5a5a5a5a5an);
  assert.throws(() => kvm.kvmGetDirtyLog(vm, 0, words.subarray(0, 1)), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.equal(words[1], 0x5a5a5a5a5a5a5a5an);
  assert.equal(kvm.kvmGetDirtyLog(vm, 0, words), 0);
  // A slot the addon did not make is unknown (ENOENT, as the kernel says for it), and so is a deleted one.
  assert.throws(() => kvm.kvmGetDirtyLog(vm, 1, words), { errno: 2, syscall: 'KVM_GET_DIRTY_LOG' });
  kvm.kvmSetMemoryRegion(vm, 0, 0, 0, 0, null, 0);
  assert.throws(() => kvm.kvmGetDirtyLog(vm, 0, words), { errno: 2, syscall: 'KVM_GET_DIRTY_LOG' });
});
