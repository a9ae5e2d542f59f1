import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { VhostUserError } from './errors.js';
import { HEADER_SIZE, Request as R, VERSION } from './protocol.js';
import { closeFd, eventfd } from './sys.js';
import { memTable } from './test-support/frontend.js';
import { connect, guest, openFds } from './test-support/harness.js';

const tick = () => new Promise((r) => setTimeout(r, 2));

function message(request: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, VERSION, true);
  v.setUint32(8, payload.length, true);
  bytes.set(payload, HEADER_SIZE);
  return bytes;
}

test('messages split anywhere, fds with the first piece, are reassembled', async () => {
  const g = guest();
  const { fe, session, closed } = connect();
  const table = message(R.SET_MEM_TABLE, memTable(g.regions));
  const bytes = new Uint8Array([...message(R.GET_PROTOCOL_FEATURES), ...table, ...message(R.GET_FEATURES)]);
  const cuts = [1, 7, 12, 13, 20, 27, 60, bytes.length - 3];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    // The memory table's fds travel with its first byte.
    const fds = from <= 12 && cut > 12 ? [g.fd, g.fd] : [];
    fe.sendRaw(bytes.subarray(from, cut), fds);
    from = cut;
    await tick();
  }
  const protocol = await fe.reply();
  assert.equal(protocol.request, R.GET_PROTOCOL_FEATURES);
  const features = await fe.reply();
  assert.equal(features.request, R.GET_FEATURES);
  assert.equal(session.memory?.numRegions, 2);
  fe.close();
  assert.equal(await closed, undefined);
  g.ram.close();
});

test('random bytes from a front-end end the session with a typed error or are served; the process lives on', async () => {
  const before = await openFds();
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof(fc.uint8Array({ maxLength: 48 }), fc.constantFrom(message(R.GET_FEATURES), message(R.SET_OWNER))), {
        minLength: 1,
        maxLength: 6,
      }),
      fc.boolean(),
      async (chunks, withFd) => {
        const { fe, closed } = connect();
        const ev = eventfd();
        for (const chunk of chunks) {
          if (chunk.length === 0) continue;
          try {
            fe.sendRaw(chunk, withFd ? [ev] : []);
          } catch {
            break; // the back-end already hung up
          }
        }
        closeFd(ev);
        await tick();
        fe.close();
        const error = await closed;
        if (error !== undefined) {
          assert.ok(error instanceof VhostUserError);
          assert.match(error.code, /^ERR_VHOST_USER_/);
        }
      },
    ),
    { numRuns: 150, seed: 8 },
  );
  assert.deepEqual(await openFds(), before, 'every fd that came with the garbage was closed');
});
