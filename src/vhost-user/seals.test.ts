/**
 * A front-end that truncates the file under guest memory (or under the dirty log) would kill the
 * back-end with SIGBUS, which JavaScript cannot catch. The back-end here is the real CLI in a
 * child process, so that such a death is seen, not suffered, by the test runner.
 */
import assert from 'node:assert/strict';
import { ftruncateSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { bit, Feature, FLAG_NEED_REPLY, Request as R, VERSION } from './protocol.js';
import { closeFd, connectUnix, eventfdRead, eventfdWrite } from './sys.js';
import { FakeFrontend, logPayload, memTable, u64, unsealedMemfd } from './test-support/frontend.js';
import { guest, setupVring } from './test-support/harness.js';
import { type Backend, startBackend } from './test-support/qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-seals-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Where the attack aims: guest memory in a sealed memfd, an unsealed one or a regular file, or the log. */
type Target = 'sealed' | 'unsealed' | 'file' | 'log';

interface Outcome {
  /** The back-end took the memory table (and the log). */
  accepted: boolean;
  /** The errno code of the truncation, when the kernel refused it. */
  truncateError?: string | undefined;
  /** The request posted after the truncation completed (the call eventfd fired). */
  completed: boolean;
}

/**
 * Connects as a front-end, sends guest memory (and for 'log' a dirty log in an unsealed memfd),
 * starts a vring with a GET_ID request posted, truncates the target file to 0 and kicks.
 */
async function attack(backend: Backend, socket: string, target: Target): Promise<Outcome> {
  const fe = new FakeFrontend(connectUnix(socket));
  const g = guest(target === 'unsealed' ? 'unsealed' : target === 'file' ? { path: join(dir, 'guest-ram') } : 'sealed');
  const fds: number[] = [];
  try {
    await fe.ask(R.GET_FEATURES);
    fe.send(R.SET_PROTOCOL_FEATURES, u64(await fe.ask(R.GET_PROTOCOL_FEATURES)));
    fe.send(R.SET_OWNER);
    fe.send(R.SET_FEATURES, u64(bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES) | bit(Feature.LOG_ALL)));
    const needReply = VERSION | FLAG_NEED_REPLY;
    let ack = await fe.ask(R.SET_MEM_TABLE, memTable(g.regions), [g.fd, g.fd], needReply);
    let victim = g.fd;
    if (target === 'log' && ack === 0n) {
      victim = unsealedMemfd(4096);
      fds.push(victim);
      ack = await fe.ask(R.SET_LOG_BASE, logPayload(4096, 0), [victim], needReply);
    }
    if (ack !== 0n) {
      await fe.hungUp();
      return { accepted: false, completed: false };
    }
    const { drv, kick, call } = setupVring(fe, g, false);
    fds.push(kick, call);
    const header = new Uint8Array(16);
    header[0] = 8; // VIRTIO_BLK_T_GET_ID: the device writes 20 bytes and a status byte
    drv.post([header], [20, 1]);
    // From here on this process must not touch the guest memory it maps: it may be gone.
    let truncateError: string | undefined;
    try {
      ftruncateSync(victim, 0);
    } catch (e) {
      truncateError = (e as NodeJS.ErrnoException).code;
    }
    eventfdWrite(kick);
    let completed = false;
    const end = Date.now() + 3000;
    while (!completed && backend.child.exitCode === null && backend.child.signalCode === null && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 5));
      completed = eventfdRead(call) !== undefined;
    }
    return { accepted: true, truncateError, completed };
  } finally {
    fe.close();
    fds.forEach(closeFd);
    g.ram.close();
  }
}

/** A back-end child serving a 1 MiB image on a fresh socket. */
async function child(name: string, args: string[] = []): Promise<{ backend: Backend; socket: string }> {
  const image = join(dir, `${name}.img`);
  writeFileSync(image, '');
  truncateSync(image, 1 << 20);
  const socket = join(dir, `${name}.sock`);
  return { backend: await startBackend('guestmem', socket, image, args), socket };
}

function alive(backend: Backend): string | undefined {
  const { exitCode, signalCode } = backend.child;
  return exitCode === null && signalCode === null ? undefined : `the back-end died (exit ${exitCode}, signal ${signalCode})`;
}

describe('a front-end that truncates what it shared', () => {
  test('cannot truncate a sealed memfd; unsealed memory, a regular file and an unsealed log are refused; the back-end lives on and serves the next front-end', async () => {
    const { backend, socket } = await child('refuse');
    try {
      const sealed = await attack(backend, socket, 'sealed');
      assert.deepEqual(sealed, { accepted: true, truncateError: 'EPERM', completed: true });
      for (const target of ['unsealed', 'file', 'log'] as const) {
        const outcome = await attack(backend, socket, target);
        assert.equal(alive(backend), undefined, `${target}: ${backend.output()}`);
        assert.deepEqual(outcome, { accepted: false, completed: false }, target);
      }
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(alive(backend), undefined, backend.output());
      const refusals = backend.output().match(/connection dropped \(ERR_VHOST_USER_UNSEALED\): .*--allow-unsealed-memory/g) ?? [];
      assert.equal(refusals.length, 3, backend.output());
      const next = new FakeFrontend(connectUnix(socket));
      assert.ok((await next.ask(R.GET_FEATURES)) !== 0n);
      next.close();
    } finally {
      await backend.stop();
    }
  });

  test('with --allow-unsealed-memory (a trusted front-end), truncating unsealed memory does kill the back-end with SIGBUS', async () => {
    const { backend, socket } = await child('trusting', ['--allow-unsealed-memory']);
    try {
      const outcome = await attack(backend, socket, 'unsealed');
      assert.deepEqual(outcome, { accepted: true, truncateError: undefined, completed: false });
      const end = Date.now() + 3000;
      while (backend.child.signalCode === null && backend.child.exitCode === null && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(backend.child.signalCode, 'SIGBUS', backend.output());
    } finally {
      await backend.stop();
    }
  });
});
