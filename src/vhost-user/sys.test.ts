import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { VhostUserError } from './errors.js';
import {
  accept,
  adoptSocket,
  closeFd,
  connectUnix,
  eventfd,
  eventfdRead,
  eventfdWrite,
  listenUnix,
  Readiness,
  recvMsg,
  sendMsg,
  socketPair,
  watch,
} from './sys.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-sys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function rejects(fn: () => unknown, code: string, errno?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof VhostUserError, String(e));
    assert.equal(e.code, code);
    if (errno !== undefined) assert.equal(e.errno, errno);
    return true;
  });
}

describe('sockets', () => {
  test('a message carries its descriptors, which arrive as new fds of the same file', () => {
    const [a, b] = socketPair();
    const ev = eventfd();
    try {
      assert.equal(sendMsg(a, Uint8Array.of(1, 2, 3), [ev]), 3);
      const buf = new Uint8Array(16);
      const got = recvMsg(b, buf, 4);
      assert.ok(got);
      assert.equal(got.bytes, 3);
      assert.deepEqual([...buf.subarray(0, 3)], [1, 2, 3]);
      assert.equal(got.truncated, false);
      assert.equal(got.fds.length, 1);
      assert.notEqual(got.fds[0], ev);
      eventfdWrite(got.fds[0], 5);
      assert.equal(eventfdRead(ev), 5n);
      closeFd(got.fds[0]);
    } finally {
      [a, b, ev].forEach(closeFd);
    }
  });

  test('more descriptors than asked for: the rest are dropped and the message says so', () => {
    const [a, b] = socketPair();
    const fds = [eventfd(), eventfd(), eventfd()];
    try {
      sendMsg(a, Uint8Array.of(9), fds);
      const got = recvMsg(b, new Uint8Array(1), 1);
      assert.ok(got);
      assert.equal(got.truncated, true);
      assert.equal(got.fds.length, 1);
      got.fds.forEach(closeFd);
    } finally {
      [a, b, ...fds].forEach(closeFd);
    }
  });

  test('nothing waiting reads as undefined, a closed peer as 0 bytes, and sending to it fails with EPIPE', () => {
    const [a, b] = socketPair();
    try {
      assert.equal(recvMsg(b, new Uint8Array(4), 0), undefined);
      closeSync(a);
      assert.equal(recvMsg(b, new Uint8Array(4), 0)?.bytes, 0);
      rejects(() => sendMsg(b, Uint8Array.of(1)), 'ERR_VHOST_USER_SYSTEM', 'EPIPE');
    } finally {
      closeFd(b);
    }
  });

  test('listen, connect, accept; accept with nobody waiting gives undefined', () => {
    const path = join(dir, 'l.sock');
    const l = listenUnix(path);
    try {
      assert.equal(accept(l), undefined);
      const c = connectUnix(path);
      const s = accept(l);
      assert.ok(s !== undefined);
      sendMsg(c, Uint8Array.of(7));
      assert.equal(recvMsg(s, new Uint8Array(1), 0)?.bytes, 1);
      assert.equal(adoptSocket(l), true);
      assert.equal(adoptSocket(s), false);
      [c, s].forEach(closeFd);
      rejects(() => listenUnix(path), 'ERR_VHOST_USER_SYSTEM', 'EADDRINUSE');
    } finally {
      closeFd(l);
    }
    rejects(() => connectUnix(join(dir, 'nobody.sock')), 'ERR_VHOST_USER_SYSTEM', 'ENOENT');
  });

  test('adoptSocket refuses what is not a socket', () => {
    const path = join(dir, 'plain');
    writeFileSync(path, 'x');
    const fd = openSync(path, 'r');
    try {
      rejects(() => adoptSocket(fd), 'ERR_VHOST_USER_SYSTEM', 'ENOTSOCK');
    } finally {
      closeSync(fd);
    }
  });

  test('bad arguments are typed errors', () => {
    rejects(() => recvMsg(-1, new Uint8Array(1), 0), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => recvMsg(0, new Uint8Array(0), 0), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => recvMsg(0, new Uint8Array(1), 33), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => sendMsg(0, Uint8Array.of(1), [-1]), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => sendMsg(0, Uint8Array.of(1), 'x' as unknown as number[]), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => listenUnix('x'.repeat(107)), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => eventfdWrite(0, 0), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => watch(0, 0, () => {}), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => watch(0, 1, 'f' as unknown as () => void), 'ERR_VHOST_USER_INVALID_ARG');
    rejects(() => recvMsg(0x7fff_fff0, new Uint8Array(1), 0), 'ERR_VHOST_USER_SYSTEM', 'EBADF');
  });
});

describe('eventfds and watchers', () => {
  test('an eventfd counts signals and reads as undefined when zero', () => {
    const ev = eventfd();
    try {
      assert.equal(eventfdRead(ev), undefined);
      eventfdWrite(ev);
      eventfdWrite(ev, 2);
      assert.equal(eventfdRead(ev), 3n);
      assert.equal(eventfdRead(ev), undefined);
    } finally {
      closeFd(ev);
    }
  });

  test('eventfdRead and eventfdWrite never block, even on a blocking fd from elsewhere', (t) => {
    // A front-end's descriptor may be blocking (its file flags are the front-end's to set): an
    // empty one must read as undefined and a full one refuse with EAGAIN, never hang the process.
    const fifo = join(dir, 'fifo');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return t.skip('mkfifo is not available');
    const script = `
      import { openSync, writeSync } from 'node:fs';
      import { eventfdRead, eventfdWrite } from ${JSON.stringify(new URL('./sys.js', import.meta.url).href)};
      const fd = openSync(${JSON.stringify(fifo)}, 'r+'); // a blocking FIFO that never sees EOF
      const out = [String(eventfdRead(fd))];
      writeSync(fd, new Uint8Array(65536)); // the pipe is full now
      try { eventfdWrite(fd); out.push('written'); } catch (e) { out.push(e.code + ' ' + e.errno); }
      console.log(out.join(','));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.signal, null, 'the child hung in a blocking read or write');
    assert.equal(r.stdout.trim(), 'undefined,ERR_VHOST_USER_SYSTEM EAGAIN', r.stderr);
  });

  test('a watcher calls back when the fd becomes readable, and never after close', async () => {
    const ev = eventfd();
    const calls: number[] = [];
    let fired!: () => void;
    const done = new Promise<void>((resolve) => {
      fired = resolve;
    });
    const w = watch(ev, Readiness.READABLE, (errno, events) => {
      w.close(); // re-entrant close
      calls.push(errno, events);
      fired();
    });
    setImmediate(() => eventfdWrite(ev));
    await done;
    eventfdWrite(ev);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(calls, [0, Readiness.READABLE]);
    assert.equal(w.active, false);
    w.close();
    closeFd(ev);
  });

  test('a watcher polls its own duplicate: closing the original fd under it is harmless', async () => {
    const [a, b] = socketPair();
    let seen = 0;
    const w = watch(a, Readiness.READABLE, () => {
      seen++;
      w.close();
    });
    closeSync(a);
    sendMsg(b, Uint8Array.of(1));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(seen, 1);
    closeFd(b);
  });

  test('watching a regular file is refused (epoll cannot)', () => {
    const path = join(dir, 'regular');
    writeFileSync(path, 'x');
    const fd = openSync(path, 'r');
    try {
      rejects(() => watch(fd, Readiness.READABLE, () => {}), 'ERR_VHOST_USER_SYSTEM', 'EPERM');
      assert.ok(fstatSync(fd).isFile(), 'the fd stays open');
    } finally {
      closeSync(fd);
    }
    rejects(() => watch(0x7fff_fff0, Readiness.READABLE, () => {}), 'ERR_VHOST_USER_SYSTEM', 'EBADF');
  });
});
