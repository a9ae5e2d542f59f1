// The package's install script (also run by `npm ci` in a clone). It never fails the install:
// guestmem's pure-TypeScript part needs no addon, and guestmem/mmap says, when imported, that the
// addon is unavailable and why (the reason is left in native/build/install-error.txt).
//
// - In an installed package, a binary in prebuilds/<platform>-<arch>/ that loads here is used
//   as it is; otherwise the addon is built from source with node-gyp (npm puts its own on PATH).
// - In a clone (tsconfig.json present), the addon is always built from source.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('../', import.meta.url);
const errorFile = new URL('native/build/install-error.txt', root);
const clone = existsSync(new URL('tsconfig.json', root));
const prebuilt = new URL(`prebuilds/${process.platform}-${process.arch}/guestmem.node`, root);

rmSync(errorFile, { force: true });
if (!clone && existsSync(prebuilt) && loads(prebuilt)) process.exit(0);
if (process.platform !== 'linux') {
  skip(`the addon is for Linux only, this is ${process.platform}`);
}
// Say "no compiler" rather than pass on make's failure to run one.
const cc = process.env.CC || 'cc';
const probe = spawnSync(cc, ['--version'], { stdio: 'ignore' });
if (probe.error !== undefined || probe.status !== 0) {
  skip(`there is no C compiler (\`${cc} --version\` ${probe.error !== undefined ? 'cannot run' : `exits with status ${probe.status}`})`);
}
const gyp = spawnSync('node-gyp', ['rebuild', '-C', 'native', ...process.argv.slice(2)], {
  cwd: root,
  encoding: 'utf8',
  stdio: ['ignore', 'inherit', 'pipe'],
});
if (gyp.error !== undefined) skip(`node-gyp could not be run (${gyp.error.message})`);
if (gyp.status !== 0) {
  process.stderr.write(gyp.stderr);
  // The first compiler or make error says more than node-gyp's closing lines.
  const lines = gyp.stderr.split('\n').map((l) => l.trim());
  const first = lines.find((l) => /error|not found|No such file/i.test(l) && !l.startsWith('gyp ERR!')) ?? lines.find((l) => l !== '');
  skip(`node-gyp rebuild failed: ${first ?? `exit status ${gyp.status}`}`);
}

function loads(file) {
  try {
    createRequire(import.meta.url)(file.pathname);
    return true;
  } catch (e) {
    process.stderr.write(`guestmem: the prebuilt addon does not load here (${e.message.split('\n')[0]}); building it from source\n`);
    return false;
  }
}

function skip(why) {
  mkdirSync(new URL('.', errorFile), { recursive: true });
  writeFileSync(errorFile, `${why}\n`);
  process.stderr.write(
    `guestmem: the native addon (guestmem/mmap, guestmem/vhost-user) is not available: ${why}.\n` +
      'guestmem: everything else works; to build the addon, install a C compiler, make and python3 and run `npm rebuild guestmem`.\n',
  );
  process.exit(0);
}
