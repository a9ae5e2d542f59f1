/** The worked example runs as a user would run it, and reports what the device did. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../build/examples/virtio-blk.js', import.meta.url));

test('examples/virtio-blk.js: requests over a temp image, data intact, the out-of-range write refused', (t) => {
  if (!existsSync(script)) {
    t.skip(`${script} is not built (npm run build compiles the examples)`);
    return;
  }
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /2048 sectors of 512 bytes, seg_max 62/);
  assert.match(out, /device handled 3, interrupt: true, statuses: 0,0,0/);
  assert.match(out, /read back 8 sectors: status 0, identical/);
  assert.match(out, /device id: guestmem-example/);
  assert.match(out, /write-zeroes of sectors 18-19: status 0/);
  assert.match(out, /past the end\): status 1 \(refused\)/);
  assert.match(out, /image check: sectors 16-23 as written, 18-19 zeroed, nothing else touched/);
});
