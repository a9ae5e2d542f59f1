import assert from 'node:assert/strict';
import { closeSync } from 'node:fs';
import { test } from 'node:test';
import { AtomicBitmap } from '../bitmap/atomic-bitmap.js';
import { MmapBackend } from '../mmap/backend.js';
import { kvm } from './native.js';
import { type SlotPlan, SlotTable } from './slots.js';
import { kvmFdOrSkip } from './test-support/guests.js';

const plan = (name: string, guest: number, backend: MmapBackend): SlotPlan => ({
  name,
  guest,
  size: backend.size,
  backend,
  offset: 0,
  readOnly: false,
  dirty: { bitmap: new AtomicBitmap(backend.size), firstPage: 0 },
});

test('a change that removes slots and then fails to add one puts the removed slots back in KVM, with their ids and logs', (t) => {
  const sys = kvmFdOrSkip(t);
  if (sys === undefined) return;
  const vm = kvm.kvmCreateVm(sys);
  const a = MmapBackend.anonymous(0x100000);
  const b = MmapBackend.anonymous(0x4000);
  const closed = MmapBackend.anonymous(0x1000);
  closed.close(); // passes the checks, fails when its mapping is to be held
  const table = new SlotTable<string>({ vmFd: vm, maxSlots: 32, readOnlyMem: false, manualDirtyLog: false });
  t.after(() => {
    table.clear();
    closeSync(vm);
    closeSync(sys);
    a.close();
    b.close();
  });
  table.change([], new Map([['a', [plan('a', 0, a)]]]));
  table.setLogging(true);
  const before = table.describe();
  assert.throws(
    () => table.change(['a'], new Map([['b', [plan('b', 0x100000, b)]], ['c', [plan('c', 0x200000, closed)]]])),
    { code: 'ERR_BACKEND_CLOSED' },
  );
  assert.deepEqual(table.describe(), before);
  assert.equal(table.count, 1);
  // In KVM: slot 0 is a's again (256 pages, logging), slot 1 (b's, made and dropped) is gone.
  assert.throws(() => kvm.kvmGetDirtyLog(vm, 0, new BigUint64Array(3)), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.equal(kvm.kvmGetDirtyLog(vm, 0, new BigUint64Array(4)), 0);
  assert.throws(() => kvm.kvmGetDirtyLog(vm, 1, new BigUint64Array(1)), { errno: 2 });
  // The ids are free again for the next change.
  table.change(['a'], new Map([['b', [plan('b', 0x100000, b)]]]));
  assert.deepEqual(table.describe().map((s) => [s.id, s.guest, s.size]), [[0, 0x100000, 0x4000]]);
});
