/**
 * Child process of share.test.ts: maps the memfd or file it inherited as fd 3 from the
 * description in argv[2], reports what the parent wrote and writes an answer.
 */
import { MmapBackend } from '../index.js';

using b = MmapBackend.fromShared(JSON.parse(process.argv[2]), { fd: 3 });
const u8 = b.views().u8;
const seen = Array.from(u8.subarray(0, 8));
u8.set([1, 2, 3, 4], 8);
process.stdout.write(JSON.stringify({ seen, source: b.source, fd: b.fd, size: b.size }));
