/**
 * The KVM device the KVM tests run on: here, or inside the nested-KVM rig (rig.test.ts runs every
 * dist/kvm test file there with GUESTMEM_KVM_RIG=1). Inside the rig /dev/kvm must be there; on a
 * host it is checked where it exists.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { MmapBackend } from '../mmap/index.js';

const inRig = process.env.GUESTMEM_KVM_RIG === '1';
// makedev(10, 232): the misc device number Linux gives /dev/kvm.
const KVM_RDEV = (10 << 8) | 232;

test('/dev/kvm is the KVM misc device and opens read-write', (t) => {
  if (!inRig && !existsSync('/dev/kvm')) return t.skip('this machine has no /dev/kvm (the nested-KVM rig of rig.test.ts provides one)');
  const st = statSync('/dev/kvm');
  assert.ok(st.isCharacterDevice(), '/dev/kvm is a character device');
  assert.equal(st.rdev, KVM_RDEV);
  closeSync(openSync('/dev/kvm', 'r+'));
});

test('in the rig: the KVM is kvm_amd with nested paging, and guestmem\'s addon maps memory', (t) => {
  if (!inRig) return t.skip('runs inside the nested-KVM rig only (GUESTMEM_KVM_RIG=1)');
  assert.equal(readFileSync('/sys/module/kvm_amd/parameters/nested', 'utf8').trim(), '1');
  assert.equal(readFileSync('/sys/module/kvm_amd/parameters/npt', 'utf8').trim(), 'Y');
  // Tests run children as other users (nobody): they must get into / to find node and the package.
  assert.equal(statSync('/').mode & 0o755, 0o755, 'the root directory is open to every user');
  using b = MmapBackend.anonymous(1 << 20);
  const { u8 } = b.views();
  u8[4096] = 0xa5;
  assert.equal(u8[4096], 0xa5);
});
