// Run by `npm pack` / `npm publish` (the prepack script): builds the addon that ships in
// prebuilds/<platform>-<arch>/, where guestmem/mmap looks for it in an installed package, so that
// installing guestmem needs no compiler. The binary is made here, never committed.
//
// It is built in a Debian 11 root (glibc 2.31, made with debootstrap from Debian's packages and
// cached in .cache/debian11-root), so that it loads on the older distributions Node 20 supports
// (Debian 11, Ubuntu 20.04, RHEL 8), not only on glibc 2.34+ as a build on this host would. Where
// the root cannot be had (not root, no debootstrap), it says so and ships the host's build.
//
//   node native/prebuild.mjs [--out DIR]     (default: prebuilds/<platform>-<arch>)
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('../', import.meta.url));
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const out = values.out ?? join(root, 'prebuilds', `${process.platform}-${process.arch}`);
/** The Debian 11 root: the oldest glibc the shipped binary must load with. */
const OLD_ROOT = join(root, '.cache', 'debian11-root');
const say = (line) => console.log(`prebuild: ${line}`);

const built = buildInOldRoot() ?? hostBuild();
mkdirSync(out, { recursive: true });
copyFileSync(built, join(out, 'guestmem.node'));
const versions = [...new Set(readFileSync(built, 'latin1').match(/GLIBC_2\.\d+/g) ?? [])];
const newest = versions.sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])).at(-1);
say(`${join(out, 'guestmem.node')} (needs ${newest ?? 'no versioned glibc symbol'})`);

/** The addon compiled in the Debian 11 root, or undefined (saying why) where that cannot be done. */
function buildInOldRoot() {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    return skip('building in a Debian 11 root needs Linux and root (chroot)');
  }
  if (!existsSync(join(OLD_ROOT, 'usr/bin/gcc'))) {
    say(`making the Debian 11 root in ${OLD_ROOT} with debootstrap (once; about 100 MB of Debian packages)`);
    rmSync(OLD_ROOT, { recursive: true, force: true });
    mkdirSync(dirname(OLD_ROOT), { recursive: true });
    const r = spawnSync('debootstrap', ['--variant=minbase', '--include=gcc,libc6-dev', 'bullseye', OLD_ROOT, 'http://deb.debian.org/debian'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (r.error !== undefined || r.status !== 0) {
      rmSync(OLD_ROOT, { recursive: true, force: true });
      return skip(`debootstrap failed (${r.error?.message ?? `exit status ${r.status}`}; apt-get install debootstrap)`);
    }
  }
  // The sources and Node's headers go into the root; gcc there links against its glibc 2.31.
  const work = join(OLD_ROOT, 'tmp', 'guestmem-build');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const gyp = JSON.parse(readFileSync(join(root, 'native', 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, ''));
  const target = gyp.targets[0];
  cpSync(join(root, 'native'), join(work, 'src'), { recursive: true, filter: (p) => !p.includes('/native/build') });
  const headers = join(dirname(process.execPath), '..', 'include', 'node');
  if (!existsSync(join(headers, 'node_api.h'))) return skip(`no Node headers in ${headers}`);
  cpSync(headers, join(work, 'include'), { recursive: true });
  const args = [
    OLD_ROOT, 'gcc',
    ...target.cflags, '-fPIC', '-shared', '-pthread', '-m64',
    ...target.defines.map((d) => `-D${d}`), '-DBUILDING_NODE_EXTENSION', '-D_FILE_OFFSET_BITS=64', '-D_LARGEFILE_SOURCE',
    '-I/tmp/guestmem-build/include',
    ...target.sources.map((s) => `/tmp/guestmem-build/src/${s}`),
    '-o', '/tmp/guestmem-build/guestmem.node',
  ];
  const r = spawnSync('chroot', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`prebuild: the build in ${OLD_ROOT} failed:\n${r.stderr || r.error?.message}`);
  return join(work, 'guestmem.node');
}

function skip(why) {
  say(`${why}: shipping this host's build instead, which needs this host's glibc or newer`);
  return undefined;
}

function hostBuild() {
  const file = join(root, 'native', 'build', 'Release', 'guestmem.node');
  if (!existsSync(file)) throw new Error('prebuild: no native/build/Release/guestmem.node (npm run build:native)');
  return file;
}
