/** Two connected in-process Duplex ends, with a hook that may change what goes from `a` to `b`. */
import { Duplex } from 'node:stream';

export function duplexPair(tamper: (chunk: Buffer, offset: number) => Buffer = (c) => c): [Duplex, Duplex] {
  let toA: Duplex;
  let toB: Duplex;
  let sent = 0;
  const end = (peer: () => Duplex, change: (c: Buffer) => Buffer) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, done) {
        peer().push(change(Buffer.from(chunk)));
        done();
      },
      final(done) {
        peer().push(null);
        done();
      },
      destroy(err, done) {
        const p = peer();
        if (!p.destroyed) p.destroy();
        done(err);
      },
    });
  const a = end(
    () => toB,
    (c) => {
      const out = tamper(c, sent);
      sent += c.length;
      return out;
    },
  );
  const b = end(() => toA, (c) => c);
  toA = a;
  toB = b;
  return [a, b];
}
