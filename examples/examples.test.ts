/** Every example runs as a user would run it, and says what it should. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';

/** Runs `build/examples/<name>.js` and returns what it printed (a failure throws with its stderr). */
function run(name: string): string {
  return execFileSync(process.execPath, [new URL(`./${name}.js`, import.meta.url).pathname], { encoding: 'utf8' });
}

describe('examples', () => {
  it('multi-region', () => {
    const out = run('multi-region');
    assert.match(out, /read back as u64le: 0x1122334455667788/);
    assert.match(out, /stops at the hole: 16 bytes/);
    assert.match(out, /fails: ERR_GUEST_ADDRESS_INVALID at 0x10000/);
  });

  it('dirty-snapshot', () => {
    const out = run('dirty-snapshot');
    assert.match(out, /written since: \[0x100000, \+2 pages\) \[0x100008000, \+3 pages\)/);
    assert.match(out, /restored full \+ diff into a fresh guest: identical/);
  });

  it('shared-worker', () => {
    const out = run('shared-worker');
    assert.match(out, /read 0xc0ffee written by the main thread/);
    assert.match(out, /main thread reads the worker's u64 at 0x200000: 0x1122334455667788/);
    assert.match(out, /harvested by the main thread: \[0x200000, \+0x1000\) \[0x300000, \+0x3000\)$/m);
  });
});
