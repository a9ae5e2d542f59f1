/**
 * The real-VM proof: a Linux guest under QEMU (TCG, shared memfd RAM) uses guestmem's
 * vhost-user-blk back-end as /dev/vda. Skips, saying why, where QEMU or the guest cannot be had.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { bootGuest, pattern, patternResults, sha256, startBackend, unavailable } from './test-support/qemu.js';

const missing = unavailable();
const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-e2e-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function freshImage(name: string, mib: number): string {
  const path = join(dir, name);
  writeFileSync(path, '');
  truncateSync(path, mib << 20);
  return path;
}

// The skip is on each test, not the suite: node:test counts skipped tests, not skipped suites.
describe('a Linux guest on guestmem-vhost-user-blk', () => {
  test('with memory slots (ADD_MEM_REG): writes a pattern at 4 KiB, 64 KiB and 1 MiB blocks, reads it back intact, and the image holds it', { skip: missing }, async () => {
    const image = freshImage('pattern.img', 128);
    const socket = join(dir, 'pattern.sock');
    const backend = await startBackend('guestmem', socket, image);
    const run = await bootGuest(socket, 'pattern').finally(() => backend.stop());
    const results = patternResults(run);
    assert.equal(run.results.at(-1), 'done errors=0', run.console.slice(-3000));
    assert.deepEqual(results.map((r) => r.bs), [4096, 65536, 1 << 20]);
    const img = readFileSync(image);
    for (const r of results) {
      const want = sha256(pattern(`guestmem e2e pattern bs=${r.bs}`, r.bytes));
      assert.equal(r.want, want, `the guest's pattern at bs=${r.bs}`);
      assert.equal(r.got, want, `what the guest read back at bs=${r.bs}`);
      assert.equal(sha256(img.subarray(r.offset, r.offset + r.bytes)), want, `the image at bs=${r.bs}`);
    }
    // Nothing outside the requested sectors was written: the image is zero around the patterns.
    const written = new Uint8Array(img.length);
    for (const r of results) written.fill(1, r.offset, r.offset + r.bytes);
    assert.ok(img.every((b, i) => b === 0 || written[i] === 1), 'bytes outside the written ranges stayed zero');
    assert.match(backend.output(), /front-end connected/);
    assert.doesNotMatch(backend.output(), /connection dropped|stopped/);
  });


  test('with 2 vCPUs on 2 queues and SET_MEM_TABLE: makes an ext2 file system, writes files, remounts and reads them back', { skip: missing }, async () => {
    const image = freshImage('fs.img', 64);
    const socket = join(dir, 'fs.sock');
    const backend = await startBackend('guestmem', socket, image, ['--queues', '2', '--no-mem-slots']);
    const run = await bootGuest(socket, 'fs', { smp: 2, queues: 2 }).finally(() => backend.stop());
    assert.equal(run.results.at(-1), 'done errors=0', run.console.slice(-3000));
    assert.ok(run.results[0].endsWith(' queues=2'), `the guest's disk has 2 queues: ${run.results[0]}`);
    assert.ok(run.results.includes('fs files=8 same_after_remount=yes'), run.results.join('\n'));
    const sums = run.results.find((l) => l.startsWith('fs sums '))?.slice(8).trim().split(' ');
    const expected = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => sha256(pattern(`guestmem fs file ${n}`, n * 300_000)));
    assert.deepEqual(sums, expected);
    // The host sees the same file system in the image.
    const fsck = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8' });
    if (fsck.error === undefined) assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
    const cat = spawnSync('debugfs', ['-R', 'cat /d/f3', image], { encoding: 'buffer' });
    if (cat.error === undefined) assert.equal(sha256(cat.stdout), expected[2]);
    else assert.equal(readFileSync(image).readUInt16LE(1024 + 56), 0xef53, 'an ext2 superblock');
    assert.match(backend.output(), /2 queues/);
    assert.doesNotMatch(backend.output(), /connection dropped|stopped/);
  });

  test('with share=off (private guest RAM): the back-end reports ERR_VHOST_USER_NOT_SHARED naming share=on instead of a silent hang', { skip: missing }, async () => {
    const image = freshImage('private.img', 16);
    const socket = join(dir, 'private.sock');
    const backend = await startBackend('guestmem', socket, image);
    const reported = () => /ERR_VHOST_USER_NOT_SHARED/.test(backend.output());
    await bootGuest(socket, 'pattern', { share: false, stopWhen: reported, timeoutMs: 150_000 }).finally(() => backend.stop());
    assert.match(backend.output(), /error: connection dropped \(ERR_VHOST_USER_NOT_SHARED\): vring 0 was kicked 2 times, but its rings read all zero here: .*share=on/);
  });
});
