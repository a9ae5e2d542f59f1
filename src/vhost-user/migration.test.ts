/**
 * Live migration of a real QEMU guest whose disk is guestmem's vhost-user-blk back-end: the
 * back-end must mark every guest page it writes in QEMU's dirty log (SET_LOG_BASE, LOG_ALL), or
 * the destination keeps stale pages. The guest's buffers are written only by the device (O_DIRECT
 * reads), before and during the migration; the destination guest hashes them and the test
 * compares them with the disk. The negative control runs the source back-end with its log
 * discarded (GUESTMEM_TEST_DISCARD_DIRTY_LOG, test-only) and must find stale pages.
 * Skips, saying why, where QEMU or the guest cannot be had (as e2e.test.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  bufferReports,
  command,
  dirtySyncs,
  remaining,
  fillImage,
  pagesLogged,
  Qmp,
  stalePages,
  startQemu,
  waitMigration,
} from './test-support/migration.js';
import { type Backend, startBackend, unavailable } from './test-support/qemu.js';

const missing = unavailable();
const dir = mkdtempSync(join(tmpdir(), 'guestmem-vhost-migrate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  readonly seconds: number;
  readonly downtimeMs: number;
  readonly dirtySyncs: number;
  readonly syncsAtStop: number;
  readonly pagesLogged: number | undefined;
  readonly buffers: number;
  readonly pages: number;
  readonly stale: number;
  readonly stalePerReader: number[];
}

/** Boots the guest on the source, migrates it while its readers run, and checks its buffers on the destination. */
async function migrate(name: string, discardLog: boolean): Promise<Outcome> {
  const image = join(dir, `${name}.img`);
  fillImage(image);
  const path = (what: string) => join(dir, `${name}-${what}.sock`);
  const backends: Backend[] = [];
  const qemus: ReturnType<typeof startQemu>[] = [];
  const qmps: Qmp[] = [];
  try {
    if (discardLog) process.env.GUESTMEM_TEST_DISCARD_DIRTY_LOG = '1';
    try {
      backends.push(await startBackend('guestmem', path('src'), image));
    } finally {
      delete process.env.GUESTMEM_TEST_DISCARD_DIRTY_LOG;
    }
    backends.push(await startBackend('guestmem', path('dst'), image));
    const src = startQemu(path('src'), path('src-qmp'));
    qemus.push(src);
    await src.waitFor('migrate reading', 120_000);
    const dst = startQemu(path('dst'), path('dst-qmp'), path('migration'));
    qemus.push(dst);
    const q = await Qmp.open(path('src-qmp'));
    qmps.push(q);
    qmps.push(await Qmp.open(path('dst-qmp'))); // the destination is up and listening
    // Slow and with a tiny downtime limit, so that it cannot converge while the readers run.
    await q.run('migrate-set-parameters', { 'max-bandwidth': 16 << 20, 'downtime-limit': 1 });
    const t0 = performance.now();
    await q.run('migrate', { uri: `unix:${path('migration')}` });
    // Past the bulk stage (every page sent once: little left) and through a few dirty syncs.
    const going = await waitMigration(q, (info) => dirtySyncs(info) >= 4 && remaining(info) < 8 << 20, 60_000);
    command(image, 'stop');
    try {
      await src.waitFor('migrate stopped', 30_000);
    } catch (e) {
      // With nothing dirtying its RAM, the migration may have converged before the stop.
      if ((await q.run('query-migrate')).status === 'completed') throw new ConvergedEarly();
      throw e;
    }
    await q.run('migrate-set-parameters', { 'max-bandwidth': 1 << 30, 'downtime-limit': 2000 });
    const info = await waitMigration(q, (i) => i.status === 'completed', 60_000);
    const seconds = (performance.now() - t0) / 1000;
    command(image, 'verify');
    const timer = setTimeout(() => dst.child.kill('SIGKILL'), 60_000);
    await dst.exited;
    clearTimeout(timer);
    await src.kill();
    await backends[0].stop();
    const reports = bufferReports(dst.console());
    const img = readFileSync(image);
    assert.equal(reports.length, 8, `the destination guest reported each reader's buffer:\n${dst.console().slice(-3000)}`);
    return {
      seconds,
      downtimeMs: Number(info.downtime),
      dirtySyncs: dirtySyncs(info),
      syncsAtStop: dirtySyncs(going),
      pagesLogged: pagesLogged(backends[0]),
      buffers: reports.length,
      pages: reports.reduce((n, r) => n + r.pages.length, 0),
      stale: stalePages(reports, img),
      stalePerReader: reports.map((r) => stalePages([r], img)),
    };
  } finally {
    for (const qmp of qmps) qmp.close();
    await Promise.all(qemus.map((x) => x.kill()));
    await Promise.all(backends.map((b) => b.stop()));
  }
}

/** The migration completed before the guest's readers stopped: the run says nothing. */
class ConvergedEarly extends Error {}

/** {@link migrate}, once more if the first run converged before its readers stopped. */
async function migrateOnce(name: string, discardLog: boolean, t: { diagnostic(m: string): void }): Promise<Outcome> {
  try {
    return await migrate(name, discardLog);
  } catch (e) {
    if (!(e instanceof ConvergedEarly)) throw e;
    t.diagnostic('the first run converged before the readers stopped; run again');
    return migrate(`${name}-again`, discardLog);
  }
}

const report = (what: string, o: Outcome) =>
  `${what}: ${o.seconds.toFixed(1)} s, downtime ${o.downtimeMs} ms, ${o.dirtySyncs} dirty syncs (${o.syncsAtStop} when the reads stopped), ` +
  `${o.pagesLogged} pages logged by the source back-end, ${o.stale} of ${o.pages} buffer pages stale on the destination` +
  ` (per reader: ${o.stalePerReader.join(' ')})`;

describe('live migration of a Linux guest on guestmem-vhost-user-blk', { skip: missing }, () => {
  test('the destination guest holds exactly what the device last wrote into its buffers', async (t) => {
    const o = await migrateOnce('logged', false, t);
    t.diagnostic(report('migration', o));
    assert.ok(o.dirtySyncs >= 4, `several dirty-sync rounds ran while the device wrote: ${o.dirtySyncs}`);
    assert.ok((o.pagesLogged ?? 0) > 0, 'the source back-end logged the pages it wrote');
    assert.equal(o.stale, 0, report('migration', o));
  });

  test('negative control: with the source back-end logging nothing, the destination has stale buffer pages', async (t) => {
    const o = await migrateOnce('discarded', true, t);
    t.diagnostic(report('negative control', o));
    assert.ok(o.dirtySyncs >= 4, `several dirty-sync rounds ran while the device wrote: ${o.dirtySyncs}`);
    assert.ok(o.stale > 0, report('negative control', o));
  });
});

describe('the test-only switch of the negative control (no VM)', () => {
  /** Marks pages 3 and 4 through a log over a memfd in a fresh process; what the log holds and counts. */
  const markInChild = (env: NodeJS.ProcessEnv) => {
    const code = `
      import { MmapBackend } from ${JSON.stringify(new URL('../mmap/backend.js', import.meta.url).href)};
      import { VhostUserLog } from ${JSON.stringify(new URL('./log.js', import.meta.url).href)};
      const memfd = MmapBackend.memfd(4096);
      const log = new VhostUserLog();
      log.map(memfd.fd, 8, 0);
      log.setLogAll(true);
      log.sliceAt(0x1000).markDirty(0x2000, 0x2000);
      console.log(JSON.stringify({ bits: log.bytes[0], marked: log.marked }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    return { ...(JSON.parse(r.stdout) as { bits: number; marked: number }), warned: r.stderr.includes('GUESTMEM_TEST_DISCARD_DIRTY_LOG=1') };
  };

  test('a back-end logs the pages it writes and counts them', () => {
    const { GUESTMEM_TEST_DISCARD_DIRTY_LOG: _, ...env } = process.env;
    assert.deepEqual(markInChild(env), { bits: 0b11000, marked: 2, warned: false });
  });

  test('with GUESTMEM_TEST_DISCARD_DIRTY_LOG=1 it counts them but leaves the log empty, and warns', () => {
    assert.deepEqual(markInChild({ ...process.env, GUESTMEM_TEST_DISCARD_DIRTY_LOG: '1' }), { bits: 0, marked: 2, warned: true });
  });
});
