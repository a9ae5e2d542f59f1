/**
 * Guest memory the front-end maps privately (QEMU's `memory-backend-memfd,share=off`): the
 * back-end gets the memfd, but the guest's rings stay zero in it. The session says so, naming
 * share=on, instead of leaving the guest to hang silently. (e2e.test.ts shows it with QEMU.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GuestMemory } from '../memory/guest-memory.js';
import { VirtqueueDriver } from '../virtio/driver.js';
import { VhostUserError } from './errors.js';
import { closeFd, eventfdRead, eventfdWrite } from './sys.js';
import { connect, G, guest, MiB, negotiate, setupVring, until } from './test-support/harness.js';

describe('a guest whose memory is not shared with the back-end', () => {
  test('two kicks on rings that read all zero end the session with ERR_VHOST_USER_NOT_SHARED naming share=on', async () => {
    const g = guest();
    const { fe, session, device, closed } = connect();
    await negotiate(fe, g);
    const { kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    // The guest's own copy of its RAM: what it writes never reaches the memfd the back-end maps.
    const privateCopy = GuestMemory.fromRanges([
      [G(0), MiB],
      [G(2 * MiB), MiB],
    ]);
    const drv = new VirtqueueDriver(privateCopy, { size: 16, ringBase: G(0x4000), dataBase: G(2 * MiB), dataSize: 0x10000 });
    eventfdWrite(kick); // QEMU kicks once as a ring starts: not an error yet
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(session.closed, false);
    drv.post([Uint8Array.of(1)], [16]);
    drv.kick();
    eventfdWrite(kick);
    const e = await closed;
    assert.ok(e instanceof VhostUserError);
    assert.equal(e.code, 'ERR_VHOST_USER_NOT_SHARED');
    assert.equal(e.address, 0x4000);
    assert.match(e.message, /vring 0 was kicked 2 times, but its rings read all zero here/);
    assert.match(e.message, /share=on/);
    [kick, call].forEach(closeFd);
    g.ram.close();
  });

  test('shared memory: an empty kick as the ring starts, then requests, are served', async () => {
    const g = guest();
    const { fe, device, closed } = connect();
    await negotiate(fe, g);
    const { drv, kick, call } = setupVring(fe, g);
    await until(() => device.queues.has(0), 'the queue to start');
    eventfdWrite(kick); // the empty start kick
    const used: { id: number; len: number }[] = [];
    const heads: number[] = [];
    for (let i = 0; i < 3; i++) {
      heads.push(drv.post([Uint8Array.of(i)], [8]).head);
      drv.kick();
      eventfdWrite(kick);
      await until(() => used.push(...drv.used()) > i, `request ${i} to be served`);
    }
    assert.deepEqual(used, heads.map((id) => ({ id, len: 8 })));
    assert.notEqual(eventfdRead(call), undefined, 'the driver was interrupted');
    fe.close();
    assert.equal(await closed, undefined);
    [kick, call].forEach(closeFd);
    g.ram.close();
  });
});
