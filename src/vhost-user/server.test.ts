import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { VhostUserError } from './errors.js';
import { Request as R } from './protocol.js';
import { VhostUserServer } from './server.js';
import { VhostUserSession } from './session.js';
import { connectUnix, socketPair } from './sys.js';
import { EchoDevice } from './test-support/echo-device.js';
import { FakeFrontend } from './test-support/frontend.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-server-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a server survives a hostile front-end and serves the next one; close removes the socket', async () => {
  const path = join(dir, 'vub.sock');
  writeFileSync(path, ''); // not a socket: never replaced
  assert.throws(() => VhostUserServer.listen(path, new EchoDevice()), (e: unknown) => e instanceof VhostUserError && e.code === 'ERR_VHOST_USER_SYSTEM' && e.errno === 'EADDRINUSE');
  rmSync(path);
  const ends: (string | undefined)[] = [];
  let connects = 0;
  const server = VhostUserServer.listen(path, new EchoDevice(), {
    onConnect: () => connects++,
    onDisconnect: (e) => ends.push(e?.code),
  });
  try {
    const bad = new FakeFrontend(connectUnix(path));
    bad.send(99);
    await bad.hungUp();
    bad.close();
    const good = new FakeFrontend(connectUnix(path));
    assert.ok((await good.ask(R.GET_FEATURES)) !== 0n);
    assert.ok(server.session !== undefined);
    good.close();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(ends, ['ERR_VHOST_USER_MESSAGE', undefined]);
    assert.equal(connects, 2);
  } finally {
    server.close();
  }
  assert.equal(existsSync(path), false);
});

test('a server listening on a stale socket file replaces it', async () => {
  const path = join(dir, 'stale.sock');
  const s1 = VhostUserServer.listen(path, new EchoDevice());
  // s1's socket file stays, as a crashed process leaves it.
  const s2 = VhostUserServer.listen(path, new EchoDevice());
  const fe = new FakeFrontend(connectUnix(path));
  assert.ok((await fe.ask(R.GET_FEATURES)) !== 0n);
  fe.close();
  s2.close();
  s1.close();
});

test('adopt serves an inherited connected socket, and refuses what is not a socket', async () => {
  const [a, b] = socketPair();
  let ended: string | undefined = 'not yet';
  const server = VhostUserServer.adopt(b, new EchoDevice(), { onDisconnect: (e) => { ended = e?.code; } });
  const fe = new FakeFrontend(a);
  assert.ok((await fe.ask(R.GET_FEATURES)) !== 0n);
  fe.close();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(ended, undefined);
  server.close();
  const file = join(dir, 'plain');
  writeFileSync(file, 'x');
  const fd = openSync(file, 'r');
  assert.throws(() => VhostUserServer.adopt(fd, new EchoDevice()), (e: unknown) => e instanceof VhostUserError && e.errno === 'ENOTSOCK');
  closeSync(fd);
});

test('closing the server ends its session with ERR_VHOST_USER_CLOSED and hangs up on the front-end', async () => {
  const path = join(dir, 'closing.sock');
  const ends: (string | undefined)[] = [];
  const server = VhostUserServer.listen(path, new EchoDevice(), { onDisconnect: (e) => ends.push(e?.code) });
  const fe = new FakeFrontend(connectUnix(path));
  assert.ok((await fe.ask(R.GET_FEATURES)) !== 0n);
  const session = server.session;
  server.close();
  assert.deepEqual(ends, ['ERR_VHOST_USER_CLOSED']);
  assert.equal(session?.closed, true);
  await fe.hungUp();
  fe.close();
});

test('an idle connection is dropped after the negotiation timeout with ERR_VHOST_USER_TIMEOUT, and the next front-end is served', async () => {
  const path = join(dir, 'idle.sock');
  const ends: (VhostUserError | undefined)[] = [];
  const server = VhostUserServer.listen(path, new EchoDevice(), { negotiationTimeout: 150, onDisconnect: (e) => ends.push(e) });
  try {
    const idle = new FakeFrontend(connectUnix(path));
    const next = new FakeFrontend(connectUnix(path)); // waits in the backlog
    await idle.hungUp(5000);
    idle.close();
    assert.equal(ends.length, 1);
    assert.equal(ends[0]?.code, 'ERR_VHOST_USER_TIMEOUT');
    assert.equal(ends[0]?.expected, 150);
    // The next one opens its session in time and keeps it past the timeout.
    assert.ok((await next.ask(R.GET_FEATURES)) !== 0n);
    next.send(R.SET_OWNER);
    await new Promise((r) => setTimeout(r, 400));
    assert.ok((await next.ask(R.GET_FEATURES)) !== 0n);
    assert.equal(ends.length, 1);
    next.close();
  } finally {
    server.close();
  }
});

test('session options out of range are refused before the server listens', () => {
  const path = join(dir, 'options.sock');
  for (const options of [{ negotiationTimeout: -1 }, { negotiationTimeout: 1.5 }, { negotiationTimeout: 2 ** 31 }, { maxMemory: 0 }, { maxMemory: 2 ** 53 }]) {
    assert.throws(
      () => VhostUserServer.listen(path, new EchoDevice(), options),
      (e: unknown) => e instanceof VhostUserError && e.code === 'ERR_VHOST_USER_INVALID_ARG',
      JSON.stringify(options),
    );
    assert.equal(existsSync(path), false);
  }
});

test('a session given options out of range refuses them and closes the socket it was given', async () => {
  const [a, b] = socketPair();
  assert.throws(
    () => new VhostUserSession(b, new EchoDevice(), { negotiationTimeout: Number.NaN }),
    (e: unknown) => e instanceof VhostUserError && e.code === 'ERR_VHOST_USER_INVALID_ARG',
  );
  await new FakeFrontend(a).hungUp();
  closeSync(a);
});
