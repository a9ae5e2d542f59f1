import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { VirtioBlk } from '../virtio/blk.js';
import { FdDisk } from '../virtio/blk-disk.js';
import { VhostUserBlkDevice } from './blk-device.js';
import { VhostUserError } from './errors.js';
import { Request as R } from './protocol.js';
import { VhostUserServer } from './server.js';
import { closeFd, connectUnix, listenUnix } from './sys.js';
import { FakeFrontend } from './test-support/frontend.js';
import { until } from './test-support/harness.js';

const cli = fileURLToPath(new URL('./blk-cli.js', import.meta.url));
const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const dir = mkdtempSync(join(tmpdir(), 'guestmem-blk-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const image = join(dir, 'disk.img');
writeFileSync(image, new Uint8Array(64 * 512));

const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** A running back-end and what it has written to stderr so far. */
function start(args: string[]): { child: ChildProcess; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, stderr: () => stderr, exit };
}

/** SIGTERM, and the exit status (or the signal that ended it, with what it wrote). */
async function stop(b: ReturnType<typeof start>): Promise<number | string | null> {
  if (b.child.exitCode === null) b.child.kill('SIGTERM');
  const code = await b.exit;
  return code ?? `${b.child.signalCode}: ${b.stderr()}`;
}

describe('guestmem-vhost-user-blk', () => {
  test('--help and -h describe every option and exit 0', () => {
    for (const flag of ['--help', '-h']) {
      const r = run([flag]);
      assert.equal(r.status, 0);
      for (const option of [
        '--socket PATH', '--fd N', '--image FILE', '--read-only', '--queues N', '--id ID', '--no-mem-slots',
        '--allow-unsealed-memory', '--max-memory SIZE', '--negotiation-timeout MS', '--pidfile FILE',
        '-q, --quiet', '-v, --verbose', '-h, --help', '-V, --version',
      ]) {
        // Each option has a line of its own that starts with it and says what it does.
        assert.match(r.stdout, new RegExp(`^  ${option.replace(/[-]/g, '\\-')}\\s+\\w`, 'm'), `${flag}: ${option}`);
      }
      assert.match(r.stdout, /share=on/);
    }
  });

  test('--version and -V print the package version and exit 0', () => {
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      assert.equal(r.status, 0);
      assert.equal(r.stdout, `guestmem-vhost-user-blk ${version}\n`);
    }
  });

  test('usage errors exit 2 with the usage', () => {
    const sock = join(dir, 'usage.sock');
    for (const args of [
      [],
      ['--socket', sock],
      ['--image', image],
      ['--image', image, '--socket', sock, '--fd', '3'],
      ['--bogus'],
      ['--image', image, '--socket', sock, 'extra'],
      ['--image', image, '--socket', sock, '--queues', '0'],
      ['--image', image, '--socket', sock, '--queues', 'two'],
      ['--image', image, '--fd', '-1'],
      ['--image', image, '--socket', sock, '--max-memory', '1X'],
      ['--image', image, '--socket', sock, '--negotiation-timeout', '1.5'],
      ['--image', image, '--socket', sock, '--quiet', '--verbose'],
    ]) {
      const r = run(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^usage: guestmem-vhost-user-blk/m, args.join(' '));
      assert.equal(existsSync(sock), false, 'a usage error listens on nothing');
    }
  });

  test('runtime failures exit 1 with one line and no usage', () => {
    const cases: [string[], RegExp][] = [
      [['--image', join(dir, 'missing.img'), '--socket', join(dir, 'missing.sock')], /cannot open .*missing\.img: ENOENT/],
      [['--image', image, '--socket', join(dir, 'a-dir-that-is-not-there', 'x.sock')], /cannot listen on .*ENOENT/],
      [['--image', image, '--socket', join(dir, 'pid.sock'), '--pidfile', join(dir, 'no-such-dir', 'pid')], /cannot write the pidfile: ENOENT/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^guestmem-vhost-user-blk: error: /);
      assert.match(lines[0], message);
    }
  });

  test('a socket a live instance serves is refused (exit 1), and the live one keeps serving', async () => {
    const sock = join(dir, 'live.sock');
    const first = start(['--image', image, '--socket', sock]);
    try {
      await until(() => first.stderr().includes('serving'), 'the first instance to listen', 10_000);
      const r = run(['--image', image, '--socket', sock]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^guestmem-vhost-user-blk: error: cannot listen on .*live\.sock: a live back-end is serving it\n$/);
      const fe = new FakeFrontend(connectUnix(sock));
      assert.notEqual(await fe.ask(R.GET_FEATURES), 0n, 'the first instance still answers');
      fe.close();
    } finally {
      assert.equal(await stop(first), 0);
    }
  });

  test('a stale socket file (nobody listening) is replaced', async () => {
    const sock = join(dir, 'stale.sock');
    closeFd(listenUnix(sock)); // the file stays, with no one behind it
    const b = start(['--image', image, '--socket', sock]);
    try {
      await until(() => b.stderr().includes('serving'), 'the back-end to listen', 10_000);
      const fe = new FakeFrontend(connectUnix(sock));
      assert.notEqual(await fe.ask(R.GET_FEATURES), 0n);
      fe.close();
    } finally {
      assert.equal(await stop(b), 0);
    }
  });

  test('--pidfile appears once the socket listens and goes at exit', async () => {
    const sock = join(dir, 'pidfile.sock');
    const pidfile = join(dir, 'blk.pid');
    const b = start(['--image', image, '--socket', sock, '--pidfile', pidfile]);
    try {
      await until(() => existsSync(pidfile), 'the pidfile', 10_000);
      // Whoever waited for the pidfile can connect at once.
      const fe = new FakeFrontend(connectUnix(sock));
      assert.notEqual(await fe.ask(R.GET_FEATURES), 0n);
      fe.close();
      assert.equal(readFileSync(pidfile, 'utf8'), `${b.child.pid}\n`);
    } finally {
      assert.equal(await stop(b), 0);
    }
    assert.equal(existsSync(pidfile), false);
  });

  test('log lines carry levels; --verbose traces every message, --quiet logs errors only', async () => {
    const lines: Record<string, string> = {};
    for (const mode of ['default', '--verbose', '--quiet']) {
      const sock = join(dir, `log${mode}.sock`);
      const pidfile = join(dir, `log${mode}.pid`);
      const b = start(['--image', image, '--socket', sock, '--pidfile', pidfile, ...(mode === 'default' ? [] : [mode])]);
      try {
        await until(() => existsSync(pidfile), 'the pidfile', 10_000);
        const fe = new FakeFrontend(connectUnix(sock));
        await fe.ask(R.GET_FEATURES);
        fe.send(R.SET_OWNER);
        fe.close();
        await until(() => mode === '--quiet' || b.stderr().includes('front-end disconnected'), 'the disconnection', 10_000);
      } finally {
        lines[mode] = `${await stop(b)}`;
      }
      assert.equal(lines[mode], '0', mode);
      lines[mode] = b.stderr();
    }
    for (const line of lines.default.trimEnd().split('\n')) assert.match(line, /^guestmem-vhost-user-blk: (error|warn|info|debug): /);
    assert.match(lines.default, /: info: serving .*disk\.img \(64 sectors, 1 queue\)/);
    assert.match(lines.default, /: info: front-end connected\n/);
    assert.doesNotMatch(lines.default, /: debug: /);
    assert.match(lines['--verbose'], /: debug: <- GET_FEATURES \(0 bytes\)\n.*: debug: <- SET_OWNER \(0 bytes\)\n/s);
    assert.equal(lines['--quiet'], '');
  });
});

describe('VhostUserServer.listen', () => {
  test('refuses a path that a live server serves, with EADDRINUSE', () => {
    const sock = join(dir, 'lib.sock');
    const device = () => new VhostUserBlkDevice(new VirtioBlk(new FdDisk(0, { size: 512 })));
    const first = VhostUserServer.listen(sock, device());
    try {
      assert.throws(
        () => VhostUserServer.listen(sock, device()),
        (e: VhostUserError) => {
          assert.ok(e instanceof VhostUserError);
          assert.equal(e.code, 'ERR_VHOST_USER_SYSTEM');
          assert.equal(e.errno, 'EADDRINUSE');
          return true;
        },
      );
    } finally {
      first.close();
    }
  });
});
