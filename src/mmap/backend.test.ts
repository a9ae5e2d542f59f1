import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  fstatSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AddressError } from '../address/errors.js';
import { checkNoFileOverlap, MmapBackend, MmapError, MmapFlags, PAGE_SIZE } from './index.js';
import { native } from './native.js';
import { meminfo, smapsAt } from './test-support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'guestmem-mmap-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** A new file holding `bytes`. */
function fileWith(bytes: Uint8Array): string {
  const path = join(dir, `f${files++}`);
  writeFileSync(path, bytes);
  return path;
}

function pattern(n: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
}

function readFile(path: string, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const fd = openSync(path, 'r');
  readSync(fd, out, 0, length, offset);
  closeSync(fd);
  return out;
}

function rejects(fn: () => unknown, code: string, extra: Record<string, unknown> = {}): void {
  assert.throws(fn, (e: Record<string, unknown>) => {
    assert.equal(e.code, code, String(e));
    for (const [k, v] of Object.entries(extra)) assert.equal(e[k], v, `${k} of ${e}`);
    return true;
  });
}

describe('mapping kinds', () => {
  test('anonymous private memory starts zeroed, reads back what was written, costs only what is touched', () => {
    using b = MmapBackend.anonymous(1 << 30);
    assert.equal(b.kind, 'mmap');
    assert.equal(b.source, 'anonymous');
    assert.equal(b.size, 1 << 30);
    assert.equal(b.byteOffset, 0);
    assert.equal(b.shared, true);
    assert.equal(b.mapShared, false);
    assert.equal(b.readOnly, false);
    assert.equal(b.fd, undefined);
    assert.equal(b.file, undefined);
    const v = b.views();
    assert.equal(v.u8.length, 1 << 30);
    assert.equal(v.shared, true);
    assert.equal(v.u8[12345], 0);
    v.dv.setUint32(0x1000, 0xdeadbeef, true);
    v.u8[(1 << 30) - 1] = 0x5a;
    assert.equal(v.u32[0x400], 0xdeadbeef);
    assert.equal(v.u8[(1 << 30) - 1], 0x5a);
    const smaps = smapsAt(b.address);
    assert.ok(smaps !== undefined);
    assert.ok(!smaps.flags.includes('sh'), 'private');
    assert.ok(smaps.flags.includes('nr'), 'MAP_NORESERVE');
    assert.ok((smaps.fields.get('Rss') ?? 0) < 16 << 20, 'sparse: only touched pages are resident');
  });

  test('anonymous shared memory is shmem', () => {
    using b = MmapBackend.anonymous(1 << 20, { shared: true });
    assert.equal(b.source, 'anonymous-shared');
    assert.equal(b.mapShared, true);
    b.views().u8[7] = 7;
    assert.equal(b.views().u8[7], 7);
    assert.ok(smapsAt(b.address)?.flags.includes('sh'));
  });

  test('two mappings of one memfd see each other', () => {
    using m = MmapBackend.memfd(1 << 20, { name: 'guestmem-test' });
    assert.equal(m.source, 'memfd');
    assert.equal(m.mapShared, true);
    assert.ok(m.fd !== undefined);
    assert.match(readlinkSync(`/proc/self/fd/${m.fd}`), /^\/memfd:guestmem-test/);
    assert.equal(fstatSync(m.fd).size, 1 << 20);
    using other = MmapBackend.file({ fd: m.fd, offset: 0x2000, size: 0x3000 });
    assert.notEqual(other.address, m.address);
    m.views().u8.set(pattern(100), 0x2010);
    assert.deepEqual(other.views().u8.subarray(0x10, 0x10 + 100), pattern(100));
    other.views().u8[0x2fff] = 0xab;
    assert.equal(m.views().u8[0x4fff], 0xab);
    assert.deepEqual(m.file, { dev: other.file?.dev, ino: other.file?.ino, start: 0 });
    assert.equal(other.file?.start, 0x2000);
  });

  test('a memfd is sealed against shrinking (growing stays allowed)', () => {
    using m = MmapBackend.memfd(0x4000);
    const fd = m.fd as number;
    assert.throws(() => ftruncateSync(fd, 0x1000), { code: 'EPERM' });
    ftruncateSync(fd, 0x8000);
    assert.equal(fstatSync(fd).size, 0x8000);
  });

  test('a memfd is sealed with F_SEAL_SEAL: another holder of the fd cannot add F_SEAL_WRITE', () => {
    using m = MmapBackend.memfd(0x4000);
    const fd = m.fd as number;
    assert.equal(native.getSeals(fd), native.F_SEAL_SHRINK | native.F_SEAL_SEAL);
    for (const seal of [native.F_SEAL_WRITE, native.F_SEAL_GROW]) {
      assert.throws(() => native.addSeals(fd, seal), (e: { errno?: number; syscall?: string }) => e.syscall === 'fcntl' && e.errno === 1 /* EPERM */);
    }
    assert.equal(native.getSeals(fd), native.F_SEAL_SHRINK | native.F_SEAL_SEAL);
    m.views().u8[0x3fff] = 7; // guest writes still land
    using other = MmapBackend.file({ fd, size: 0x4000 });
    assert.equal(other.views().u8[0x3fff], 7);
  });

  test('the addon checks the arguments of addSeals, getSeals and zeroPrivate', () => {
    const bad = { code: 'ERR_INVALID_ARG_VALUE' };
    using m = MmapBackend.memfd(PAGE_SIZE);
    const fd = m.fd as number;
    for (const seals of [0, -1, 0x10000, 1.5, '1']) assert.throws(() => native.addSeals(fd, seals as number), bad, String(seals));
    assert.throws(() => native.getSeals(-1), bad);
    const closed = openSync(fileWith(pattern(PAGE_SIZE)), 'r');
    assert.equal(native.getSeals(closed), 0, 'a regular file has no seals');
    closeSync(closed);
    assert.throws(() => native.getSeals(closed), { errno: 9 /* EBADF */, syscall: 'fcntl' });
    const handle = native.map(2 * PAGE_SIZE, native.MAP_PRIVATE | native.MAP_ANONYMOUS, -1, 0);
    assert.throws(() => native.zeroPrivate(handle, 1, PAGE_SIZE), bad);
    assert.throws(() => native.zeroPrivate(handle, 0, PAGE_SIZE + 1), bad);
    assert.throws(() => native.zeroPrivate(handle, PAGE_SIZE, 2 * PAGE_SIZE), bad);
    assert.throws(() => native.zeroPrivate({} as typeof handle, 0, PAGE_SIZE), bad);
    native.release(handle);
    assert.throws(() => native.zeroPrivate(handle, 0, PAGE_SIZE), { code: 'ERR_BACKEND_CLOSED' });
  });

  test('a shared file mapping writes through to the file at its offset', () => {
    const path = fileWith(pattern(4 * PAGE_SIZE));
    using b = MmapBackend.file({ path, offset: PAGE_SIZE, size: 2 * PAGE_SIZE });
    assert.equal(b.source, 'file');
    assert.equal(b.mapShared, true);
    assert.deepEqual(b.views().u8, pattern(4 * PAGE_SIZE).subarray(PAGE_SIZE, 3 * PAGE_SIZE));
    b.views().u8.fill(0xee, 0, 16);
    assert.deepEqual(readFile(path, PAGE_SIZE, 16), new Uint8Array(16).fill(0xee));
  });

  test('a private file mapping keeps its writes to itself', () => {
    const path = fileWith(pattern(2 * PAGE_SIZE));
    const fd = openSync(path, 'r');
    using b = MmapBackend.file({ fd, size: 2 * PAGE_SIZE, shared: false });
    closeSync(fd); // the backend mapped (and owns) a duplicate
    assert.equal(b.mapShared, false);
    b.views().u8.fill(0, 0, 64);
    assert.deepEqual(readFile(path, 0, 64), pattern(64));
    assert.equal(fstatSync(b.fd as number).size, 2 * PAGE_SIZE);
  });

  test('read-only memory is private: raw writes never reach the file, discard is refused', () => {
    const path = fileWith(pattern(PAGE_SIZE));
    using b = MmapBackend.file({ path, size: PAGE_SIZE, readOnly: true, populate: true });
    assert.equal(b.readOnly, true);
    assert.equal(b.mapShared, false);
    assert.equal(b.chunks()[0].readOnly, true);
    assert.deepEqual(b.views().u8, pattern(PAGE_SIZE));
    b.views().u8[0] = 0xff; // a stray write: harmless, and local
    assert.deepEqual(readFile(path, 0, 1), pattern(1));
    rejects(() => b.discard(0, PAGE_SIZE), 'ERR_MMAP_READ_ONLY');
    rejects(() => MmapBackend.file({ path, size: PAGE_SIZE, readOnly: true, shared: true }), 'ERR_MMAP_INVALID_ARGUMENT');
  });
});

describe('discard', () => {
  const size = 16 * PAGE_SIZE;
  const cases: [string, () => MmapBackend][] = [
    ['anonymous private (MADV_DONTNEED)', () => MmapBackend.anonymous(size)],
    ['anonymous shared (MADV_REMOVE)', () => MmapBackend.anonymous(size, { shared: true })],
    ['memfd (hole punched)', () => MmapBackend.memfd(size)],
    ['shared file (hole punched)', () => MmapBackend.file({ path: fileWith(pattern(size)), size })],
  ];
  for (const [name, make] of cases) {
    test(`${name}: the range reads as zeros, the rest is kept`, () => {
      using b = make();
      const u8 = b.views().u8;
      u8.set(pattern(size, 3));
      b.discard(4 * PAGE_SIZE, 8 * PAGE_SIZE);
      const expected = pattern(size, 3);
      expected.fill(0, 4 * PAGE_SIZE, 12 * PAGE_SIZE);
      assert.deepEqual(u8, expected);
      b.discard(0, 0);
    });
  }

  test('a memfd discard frees its pages and every mapping sees the zeros', () => {
    using m = MmapBackend.memfd(size, { populate: true });
    using other = MmapBackend.file({ fd: m.fd, size });
    m.views().u8.fill(1);
    const before = fstatSync(m.fd as number).blocks;
    m.discard(0, size);
    assert.ok(fstatSync(m.fd as number).blocks < before, 'blocks freed');
    assert.equal(other.views().u8.reduce((a, x) => a + x, 0), 0);
  });

  test('private anonymous discard gives the memory back', () => {
    using b = MmapBackend.anonymous(64 << 20, { populate: true });
    assert.ok((smapsAt(b.address)?.fields.get('Rss') ?? 0) >= 64 << 20);
    b.discard(0, 64 << 20);
    assert.ok((smapsAt(b.address)?.fields.get('Rss') ?? Infinity) < 1 << 20);
  });

  test('a private file mapping reads zeros, not the file, where discarded; the file and the rest are kept', () => {
    const path = fileWith(pattern(size));
    using b = MmapBackend.file({ path, size, shared: false });
    const u8 = b.views().u8;
    u8.fill(0xcc, 0, 2 * PAGE_SIZE); // private copies of two pages
    b.discard(PAGE_SIZE, 8 * PAGE_SIZE);
    const expected = pattern(size);
    expected.fill(0xcc, 0, PAGE_SIZE);
    expected.fill(0, PAGE_SIZE, 9 * PAGE_SIZE);
    assert.deepEqual(u8, expected);
    // The zeroed range is memory again: writable, and private.
    u8.fill(0xdd, 2 * PAGE_SIZE, 3 * PAGE_SIZE);
    assert.equal(u8[2 * PAGE_SIZE], 0xdd);
    assert.deepEqual(readFileSync(path), Buffer.from(pattern(size)));
  });

  test('a pinned private file mapping stays pinned where discarded', (t) => {
    const path = fileWith(pattern(4 * PAGE_SIZE));
    let b: MmapBackend;
    try {
      b = MmapBackend.file({ path, size: 4 * PAGE_SIZE, shared: false, pin: true });
    } catch (e) {
      t.skip(`mlock is not allowed here: ${(e as Error).message}`);
      return;
    }
    using _ = b;
    b.discard(PAGE_SIZE, PAGE_SIZE);
    assert.equal(b.views().u8[PAGE_SIZE], 0);
    assert.equal(smapsAt(b.address + BigInt(PAGE_SIZE))?.fields.get('Locked'), PAGE_SIZE);
  });

  test('a shared file mapping punches a hole in the file itself', () => {
    const path = fileWith(pattern(size));
    using b = MmapBackend.file({ path, size });
    b.discard(0, 2 * PAGE_SIZE);
    const expected = pattern(size);
    expected.fill(0, 0, 2 * PAGE_SIZE);
    assert.deepEqual(readFileSync(path), Buffer.from(expected));
  });

  test('unaligned or out-of-range discards are refused', () => {
    using b = MmapBackend.anonymous(4 * PAGE_SIZE);
    rejects(() => b.discard(1, PAGE_SIZE), 'ERR_MMAP_RANGE', { address: 1 });
    rejects(() => b.discard(0, PAGE_SIZE + 1), 'ERR_MMAP_RANGE');
    rejects(() => b.discard(2 * PAGE_SIZE, 4 * PAGE_SIZE), 'ERR_MMAP_RANGE', { length: 4 * PAGE_SIZE });
    assert.throws(() => b.discard(-PAGE_SIZE, PAGE_SIZE), AddressError);
  });
});

describe('options', () => {
  const thp = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');

  test('hugepages: thp marks the mapping for huge pages and gets them when the kernel allows', (t) => {
    using b = MmapBackend.anonymous(8 << 20, { hugepages: 'thp', populate: true });
    const smaps = smapsAt(b.address);
    assert.ok(smaps);
    assert.ok(smaps.flags.includes('hg'), 'VmFlags hg (MADV_HUGEPAGE)');
    if (thp.includes('[never]')) {
      t.skip('transparent huge pages are disabled on this machine (enabled = never)');
      return;
    }
    assert.ok((smaps.fields.get('AnonHugePages') ?? 0) >= 2 << 20, 'AnonHugePages');
  });

  test('hugepages: hugetlb backs a memfd with hugetlbfs pages, or fails with ENOMEM', (t) => {
    const huge = meminfo('Hugepagesize');
    if (meminfo('HugePages_Free') < 2) {
      rejects(() => MmapBackend.memfd(2 * huge, { hugepages: 'hugetlb' }), 'ERR_MMAP_FAILED', {
        errno: 'ENOMEM',
        syscall: 'mmap',
      });
      t.skip(`only the ENOMEM path: this machine has ${meminfo('HugePages_Free')} free huge pages (vm.nr_hugepages)`);
      return;
    }
    using b = MmapBackend.memfd(2 * huge, { hugepages: 'hugetlb' });
    assert.equal(b.pageSize, huge);
    b.views().u8[huge] = 1;
    assert.equal(smapsAt(b.address)?.fields.get('KernelPageSize'), huge);
    rejects(() => b.discard(0, PAGE_SIZE), 'ERR_MMAP_RANGE');
  });

  test('hugetlb needs a memfd', () => {
    rejects(() => MmapBackend.anonymous(2 << 20, { hugepages: 'hugetlb' }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(
      () => MmapBackend.file({ path: fileWith(pattern(PAGE_SIZE)), size: PAGE_SIZE, hugepages: 'hugetlb' }),
      'ERR_MMAP_INVALID_ARGUMENT',
    );
  });

  test('populate faults every page in', () => {
    using b = MmapBackend.memfd(32 << 20, { populate: true });
    assert.ok((smapsAt(b.address)?.fields.get('Rss') ?? 0) >= 32 << 20);
  });

  test('pin locks the pages, or fails with the errno the kernel gave', () => {
    let b: MmapBackend;
    try {
      b = MmapBackend.anonymous(4 << 20, { pin: true });
    } catch (e) {
      // Honest failure: a sandbox without CAP_IPC_LOCK and a small RLIMIT_MEMLOCK.
      assert.ok(e instanceof MmapError && e.code === 'ERR_MMAP_FAILED' && e.syscall === 'mlock');
      assert.ok(e.errno === 'EPERM' || e.errno === 'ENOMEM', e.errno);
      return;
    }
    using _ = b;
    const smaps = smapsAt(b.address);
    assert.ok(smaps);
    assert.ok(smaps.flags.includes('lo'), 'VmFlags lo');
    assert.ok((smaps.fields.get('Locked') ?? 0) >= 4 << 20, 'Locked');
  });

  test('pin without CAP_IPC_LOCK over RLIMIT_MEMLOCK fails with ENOMEM and maps nothing', (t) => {
    const tools = ['prlimit', 'setpriv'].filter((tool) => spawnSync(tool, ['--version']).error !== undefined);
    if (tools.length > 0) {
      t.skip(`${tools.join(' and ')} not installed: cannot drop CAP_IPC_LOCK and lower RLIMIT_MEMLOCK`);
      return;
    }
    const index = new URL('./index.js', import.meta.url).href;
    const code = `
      const { MmapBackend } = await import(${JSON.stringify(index)});
      try { MmapBackend.anonymous(4 << 20, { pin: true }); console.log('pinned'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, syscall: e.syscall })); }`;
    const r = spawnSync(
      'prlimit',
      ['--memlock=65536', 'setpriv', '--inh-caps=-ipc_lock', '--bounding-set=-ipc_lock', process.execPath, '--input-type=module', '-e', code],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { code: 'ERR_MMAP_FAILED', errno: 'ENOMEM', syscall: 'mlock' });
  });
});

describe('errors', () => {
  test('MAP_FIXED and MAP_FIXED_NOREPLACE are forbidden', () => {
    rejects(() => MmapBackend.anonymous(PAGE_SIZE, { flags: MmapFlags.MAP_FIXED }), 'ERR_MMAP_FIXED_FORBIDDEN');
    rejects(() => MmapBackend.memfd(PAGE_SIZE, { flags: MmapFlags.MAP_FIXED_NOREPLACE }), 'ERR_MMAP_FIXED_FORBIDDEN');
    const path = fileWith(pattern(PAGE_SIZE));
    rejects(
      () => MmapBackend.file({ path, size: PAGE_SIZE, flags: MmapFlags.MAP_FIXED | MmapFlags.MAP_NORESERVE }),
      'ERR_MMAP_FIXED_FORBIDDEN',
    );
  });

  test('other flags than MAP_NORESERVE and MAP_POPULATE are invalid', () => {
    using ok = MmapBackend.anonymous(PAGE_SIZE, { flags: MmapFlags.MAP_POPULATE | MmapFlags.MAP_NORESERVE });
    assert.equal(ok.size, PAGE_SIZE);
    rejects(() => MmapBackend.anonymous(PAGE_SIZE, { flags: 0x40000 /* MAP_HUGETLB */ }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.anonymous(PAGE_SIZE, { flags: 2 ** 40 }), 'ERR_MMAP_INVALID_ARGUMENT');
    assert.throws(() => MmapBackend.anonymous(PAGE_SIZE, { flags: -1 }), AddressError);
  });

  test('file offset + size overflowing is InvalidOffsetLength', () => {
    const path = fileWith(pattern(PAGE_SIZE));
    rejects(
      () => MmapBackend.file({ path, offset: Number.MAX_SAFE_INTEGER - PAGE_SIZE + 1, size: 2 * PAGE_SIZE }),
      'ERR_MMAP_INVALID_OFFSET_LENGTH',
      { length: 2 * PAGE_SIZE },
    );
  });

  test('a mapping past the end of the file is MappingPastEof', () => {
    const path = fileWith(pattern(PAGE_SIZE));
    rejects(() => MmapBackend.file({ path, size: PAGE_SIZE + 1 }), 'ERR_MMAP_PAST_EOF');
    rejects(() => MmapBackend.file({ path, offset: PAGE_SIZE, size: 1000 }), 'ERR_MMAP_PAST_EOF', {
      address: PAGE_SIZE,
      length: 1000,
    });
  });

  test('overlapping file mappings are MappingOverlap, whatever descriptor they came through', () => {
    const path = fileWith(pattern(10 * 1024));
    using a = MmapBackend.file({ path, size: PAGE_SIZE });
    using b = MmapBackend.file({ path, offset: PAGE_SIZE, size: PAGE_SIZE });
    checkNoFileOverlap([a, b]);
    using c = MmapBackend.file({ path, size: 5000 });
    rejects(() => checkNoFileOverlap([b, c]), 'ERR_MMAP_OVERLAP', { address: PAGE_SIZE, length: 5000 - PAGE_SIZE });
    using d = MmapBackend.file({ path, size: 1000 });
    rejects(() => checkNoFileOverlap([a, d]), 'ERR_MMAP_OVERLAP', { address: 0 });
    const fd = openSync(path, 'r+');
    using e = MmapBackend.file({ fd, offset: PAGE_SIZE, size: 1 });
    closeSync(fd);
    rejects(() => checkNoFileOverlap([e, a, b]), 'ERR_MMAP_OVERLAP', { address: PAGE_SIZE, length: 1 });
    using g = MmapBackend.file({ path, offset: 2 * PAGE_SIZE, size: 1 });
    // Another file, anonymous memory and non-mmap backends never overlap.
    using f = MmapBackend.file({ path: fileWith(pattern(5000)), size: 5000 });
    using anon = MmapBackend.anonymous(5000);
    checkNoFileOverlap([c, f, anon, anon, g]);
  });

  test('mmap failures carry the errno', () => {
    const path = fileWith(pattern(3 * PAGE_SIZE));
    // vm-memory's case: an offset that is not page-aligned.
    rejects(() => MmapBackend.file({ path, offset: PAGE_SIZE - 1, size: 1000 }), 'ERR_MMAP_FAILED', {
      errno: 'EINVAL',
      syscall: 'mmap',
    });
    // A shared writable mapping of a descriptor opened read-only.
    const fd = openSync(path, 'r');
    rejects(() => MmapBackend.file({ fd, size: PAGE_SIZE }), 'ERR_MMAP_FAILED', { errno: 'EACCES' });
    closeSync(fd);
    // More address space than the process has.
    rejects(() => MmapBackend.anonymous(2 ** 52), 'ERR_MMAP_FAILED', { errno: 'ENOMEM' });
    // Through node:fs: a missing file.
    rejects(() => MmapBackend.file({ path: join(dir, 'missing'), size: 1 }), 'ERR_MMAP_FAILED', {
      errno: 'ENOENT',
      syscall: 'open',
    });
  });

  test('invalid arguments', () => {
    rejects(() => MmapBackend.anonymous(0), 'ERR_MMAP_INVALID_ARGUMENT', { length: 0 });
    assert.throws(() => MmapBackend.anonymous(1.5), { code: 'ERR_INVALID_ADDRESS' });
    assert.throws(() => MmapBackend.memfd(-1), { code: 'ERR_INVALID_ADDRESS' });
    rejects(() => MmapBackend.memfd(PAGE_SIZE, { name: 'x'.repeat(249) }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.file({ size: 1 }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.file({ fd: 0, path: '/etc/hostname', size: 1 }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.file({ path: '/dev/zero', size: PAGE_SIZE }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.file({ fd: 2 ** 31, size: 1 }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.file({ fd: 12345, size: 1 }), 'ERR_MMAP_FAILED', { errno: 'EBADF' });
    assert.throws(() => MmapBackend.file({ fd: -1, size: 1 }), { name: 'AddressError', code: 'ERR_INVALID_ADDRESS' });
    using tiny = MmapBackend.memfd(1);
    assert.throws(() => MmapBackend.fromShared(tiny.share(), { fd: 0.5 }), { name: 'AddressError' });
    rejects(() => MmapBackend.anonymous(PAGE_SIZE, { chunkSize: 100 }), 'ERR_MMAP_INVALID_ARGUMENT');
    rejects(() => MmapBackend.anonymous(PAGE_SIZE, { chunkSize: 2 ** 33 }), 'ERR_MMAP_INVALID_ARGUMENT');
  });

  test('a failed mapping leaves no descriptor behind', () => {
    const before = readdirSync('/proc/self/fd');
    const path = fileWith(pattern(2 * PAGE_SIZE));
    rejects(() => MmapBackend.file({ path, offset: 1, size: PAGE_SIZE }), 'ERR_MMAP_FAILED', { errno: 'EINVAL' });
    rejects(() => MmapBackend.file({ path, size: 3 * PAGE_SIZE }), 'ERR_MMAP_PAST_EOF');
    assert.deepEqual(readdirSync('/proc/self/fd'), before);
  });
});

describe('the entry point', () => {
  test("'guestmem/mmap' resolves to this module through the package exports", async () => {
    const specifier = 'guestmem/mmap'; // a variable: tsc need not resolve dist/ while building it
    const viaPackage = await import(specifier);
    const direct = await import('./index.js');
    assert.equal(viaPackage.MmapBackend, direct.MmapBackend);
    assert.equal(fileURLToPath(import.meta.resolve('guestmem/mmap')), fileURLToPath(new URL('./index.js', import.meta.url)));
  });
});
