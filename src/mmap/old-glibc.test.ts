/**
 * The shipped addon loads on the oldest glibc Node 20 runs on: native/prebuild.mjs builds it in a
 * Debian 11 root (glibc 2.31), and here it is dlopen'ed inside that root (chroot). The host's own
 * build, made against a newer glibc, is refused there: the check can fail. Skips, saying why,
 * where the root cannot be had (it needs root and debootstrap; .ci/run makes it in .cache/).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const oldRoot = join(root, '.cache', 'debian11-root');
const skip =
  process.getuid?.() !== 0
    ? 'chroot needs root'
    : !existsSync(join(oldRoot, 'usr/bin/gcc'))
      ? 'no Debian 11 root in .cache/debian11-root (.ci/run or `node native/prebuild.mjs` makes it with debootstrap)'
      : false;

test('the prebuilt addon loads in a Debian 11 root (glibc 2.31); a build against this host glibc does not', { skip }, (t) => {
  const out = mkdtempSync(join(tmpdir(), 'guestmem-prebuild-'));
  const probeDir = join(oldRoot, 'tmp', 'guestmem-probe');
  t.after(() => {
    rmSync(out, { recursive: true, force: true });
    rmSync(probeDir, { recursive: true, force: true });
  });
  const built = execFileSync(process.execPath, [join(root, 'native/prebuild.mjs'), '--out', out], { encoding: 'utf8' });
  assert.match(built, /needs GLIBC_2\.(\d|1\d|2\d|3[01])\)/, 'no symbol newer than glibc 2.31');

  // A C program in the old root that dlopens a file as Node would (N-API's symbols come from the
  // node binary, so they stay unresolved: RTLD_LAZY; glibc's symbol versions are checked at load).
  mkdirSync(probeDir, { recursive: true });
  writeFileSync(
    join(probeDir, 'probe.c'),
    '#include <dlfcn.h>\n#include <stdio.h>\nint main(int c, char **v) { if (dlopen(v[1], RTLD_LAZY)) { puts("loaded"); return 0; } puts(dlerror()); return 1; }\n',
  );
  execFileSync('chroot', [oldRoot, 'gcc', '/tmp/guestmem-probe/probe.c', '-o', '/tmp/guestmem-probe/probe', '-ldl']);
  copyFileSync(join(out, 'guestmem.node'), join(probeDir, 'prebuilt.node'));
  const prebuilt = spawnSync('chroot', [oldRoot, '/tmp/guestmem-probe/probe', '/tmp/guestmem-probe/prebuilt.node'], { encoding: 'utf8' });
  assert.equal(prebuilt.stdout, 'loaded\n', prebuilt.stdout);

  const hostBuild = join(root, 'native/build/Release/guestmem.node');
  if (existsSync(hostBuild)) {
    copyFileSync(hostBuild, join(probeDir, 'host.node'));
    const host = spawnSync('chroot', [oldRoot, '/tmp/guestmem-probe/probe', '/tmp/guestmem-probe/host.node'], { encoding: 'utf8' });
    if (/GLIBC_2\.3[2-9]/.test(readFileSync(hostBuild, 'latin1'))) {
      assert.equal(host.status, 1);
      assert.match(host.stdout, /version `GLIBC_2\.3\d' not found/);
    }
  }
  // And Node here runs it.
  const page = execFileSync(process.execPath, ['-p', `require(${JSON.stringify(join(out, 'guestmem.node'))}).PAGE_SIZE`], { encoding: 'utf8' });
  assert.equal(page.trim(), '4096');
});
