/**
 * guestmem's KVM tests on a real KVM on every machine: the nested-KVM rig (test-support/rig.ts)
 * boots Linux under QEMU (TCG, AMD CPU with SVM), loads kvm-amd and runs every other dist/kvm
 * test file inside with Node. This host-side test fails on any inner failure, on zero inner
 * tests and on a run that never reached its end marker. It skips, saying why, only where QEMU
 * or the kernel package cannot be had. (Where this machine has its own /dev/kvm, the same tests
 * also run on it directly under `npm test`.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildRig, parseRigConsole, runRig } from './test-support/rig.js';

/** Hard limit of one rig run; a quiet machine needs about 15 s, a busy one several times that. */
const TIMEOUT_MS = 240_000;

describe('the rig console parser', () => {
  const tap = [
    'TAP version 13',
    '# Subtest: slots',
    '    # Subtest: adds a slot',
    '    ok 1 - adds a slot',
    '      ---',
    '      duration_ms: 1.5',
    '      ...',
    '    # Subtest: reads the log',
    '    not ok 2 - reads the log',
    '      ---',
    "      failureType: 'testCodeFailure'",
    '      error: |-',
    '        pages differ',
    '        ',
    '        [2] !== [2, 3]',
    '      code: ERR_ASSERTION',
    '      ...',
    '    # Subtest: on Intel',
    '    ok 3 - on Intel # SKIP needs vmx',
    '    1..3',
    'not ok 1 - slots',
    '  ---',
    "  failureType: 'subtestsFailed'",
    "  error: '1 subtest failed'",
    '  ...',
    '# Subtest: exits',
    'not ok 2 - exits',
    '  ---',
    "  failureType: 'testCodeFailure'",
    "  error: 'it''s gone'",
    '  ...',
    '1..2',
    '# tests 4',
    '# suites 1',
    '# pass 1',
    '# fail 2',
    '# cancelled 0',
    '# skipped 1',
    '# todo 0',
  ];
  const console = [
    '[    0.000000] Linux version 6.1.0',
    'GUESTMEM-RIG: insmod kvm-amd failed',
    'GUESTMEM-RIG: kvm kernel=6.1.0-57-cloud-amd64 module=kvm_amd dev_kvm=yes nested=1 npt=Y tdp_mmu=Y cpu=QEMU_Virtual_CPU svm=yes',
    'GUESTMEM-RIG: begin files=2',
    ...tap,
    'GUESTMEM-RIG: end exit=1',
    '[    9.000000] reboot: Restarting system',
  ].join('\r\n');

  test('reads the KVM line, the counts, every leaf failure with its suites and message, the skips and the exit status', () => {
    const r = parseRigConsole(console);
    assert.equal(r.began, true);
    assert.equal(r.exitCode, 1);
    assert.deepEqual(r.kvm, {
      kernel: '6.1.0-57-cloud-amd64', module: 'kvm_amd', dev_kvm: 'yes', nested: '1', npt: 'Y', tdp_mmu: 'Y', cpu: 'QEMU_Virtual_CPU', svm: 'yes',
    });
    assert.deepEqual(r.counts, { tests: 4, pass: 1, fail: 2, cancelled: 0, skipped: 1, todo: 0 });
    assert.deepEqual(r.failures, [
      { name: 'slots > reads the log', error: 'pages differ\n\n[2] !== [2, 3]' },
      { name: 'exits', error: "it's gone" },
    ]);
    assert.deepEqual(r.skips, [{ name: 'slots > on Intel', error: 'needs vmx' }]);
    assert.deepEqual(r.notes, ['insmod kvm-amd failed']);
  });

  test('a run cut short has no exit status, and a run without a summary no counts', () => {
    const cut = parseRigConsole(console.slice(0, console.indexOf('# tests')));
    assert.equal(cut.began, true);
    assert.equal(cut.exitCode, undefined);
    assert.equal(cut.counts, undefined);
    const none = parseRigConsole('[    0.000000] Kernel panic - not syncing');
    assert.equal(none.began, false);
    assert.deepEqual(none.kvm, {});
    assert.deepEqual(none.failures, []);
  });
});

test('the KVM tests pass inside the nested-KVM rig (QEMU TCG, AMD SVM, kvm-amd)', { timeout: TIMEOUT_MS + 120_000 }, async (t) => {
  const why = buildRig();
  if (why !== undefined) return t.skip(why);
  const run = await runRig(TIMEOUT_MS);
  const r = run.result;
  const tail = run.console.slice(-8000);
  assert.equal(run.timedOut, false, `the rig did not finish within ${TIMEOUT_MS / 1000} s:\n${tail}`);
  assert.ok(r.began, `the rig never started its tests:\n${tail}`);
  assert.notEqual(r.exitCode, undefined, `the rig's run has no end marker (it died or hung):\n${tail}`);
  t.diagnostic(`inner KVM: ${Object.entries(r.kvm).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  t.diagnostic(`inner tests: ${r.counts === undefined ? 'no summary' : Object.entries(r.counts).map(([k, v]) => `${k} ${v}`).join(', ')}; rig run ${run.seconds.toFixed(1)} s`);
  for (const s of r.skips) t.diagnostic(`inner skip: ${s.name}: ${s.error}`);
  assert.deepEqual(r.notes, [], 'the rig reported no set-up failure');
  assert.equal(r.kvm.module, 'kvm_amd');
  assert.equal(r.kvm.dev_kvm, 'yes');
  const failed = r.failures.map((f) => `✖ ${f.name}\n    ${f.error.replaceAll('\n', '\n    ')}`);
  assert.equal(r.failures.length, 0, `${r.failures.length} inner test(s) failed in the rig:\n${failed.join('\n')}`);
  assert.notEqual(r.counts, undefined, `the inner run printed no TAP summary:\n${tail}`);
  assert.ok(r.counts!.tests > 0, 'the rig ran at least one test');
  assert.equal(r.counts!.fail, 0);
  assert.equal(r.counts!.cancelled, 0);
  assert.equal(r.exitCode, 0, 'the inner node --test exit status');
});
