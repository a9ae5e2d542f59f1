// Run by `npm pack` / `npm publish` (the prepack script) after `npm run build:native`: copies the
// addon to prebuilds/<platform>-<arch>/, where guestmem/mmap looks for it in an installed package,
// so that installing guestmem needs no compiler. The binary is made here, never committed.
import { copyFileSync, mkdirSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const dir = new URL(`prebuilds/${process.platform}-${process.arch}/`, root);
mkdirSync(dir, { recursive: true });
copyFileSync(new URL('native/build/Release/guestmem.node', root), new URL('guestmem.node', dir));
console.log(`prebuild: ${new URL('guestmem.node', dir).pathname}`);
