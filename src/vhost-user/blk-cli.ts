#!/usr/bin/env node
/**
 * guestmem-vhost-user-blk: a vhost-user-blk back-end serving a disk image to QEMU.
 *
 *   guestmem-vhost-user-blk --socket PATH --image FILE [--read-only] [--queues N] [--id ID]
 *   guestmem-vhost-user-blk --fd N --image FILE ...   (an inherited listening or connected socket)
 *   --no-mem-slots: do not offer CONFIGURE_MEM_SLOTS, so that the front-end sends SET_MEM_TABLE
 *   --allow-unsealed-memory: map guest memory and log fds that are not sealed against shrinking
 *     (a regular file, an unsealed memfd). Only for a trusted front-end: truncating such a file
 *     kills this process with SIGBUS. QEMU's memory-backend-memfd is sealed by default.
 *   --max-memory SIZE: the most guest memory a front-end may map (bytes, or with K/M/G/T;
 *     default 1T)
 *   --negotiation-timeout MS: drop a connection that has not sent SET_OWNER after MS
 *     milliseconds (default 10000; 0: wait forever)
 *
 * Then: qemu-system-x86_64 -object memory-backend-memfd,id=mem,size=1G,share=on
 *   -M pc,memory-backend=mem -chardev socket,id=vub,path=PATH -device vhost-user-blk-pci,chardev=vub
 */
import { closeSync, openSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FdDisk } from '../virtio/blk-disk.js';
import { VirtioBlk } from '../virtio/blk.js';
import { VhostUserBlkDevice } from './blk-device.js';
import type { VhostUserError } from './errors.js';
import { bit, ProtocolFeature } from './protocol.js';
import { VhostUserServer } from './server.js';
import { PROTOCOL_FEATURES, type VhostUserSession } from './session.js';

const usage =
  'usage: guestmem-vhost-user-blk (--socket PATH | --fd N) --image FILE [--read-only] [--queues N] [--id ID] [--no-mem-slots]\n' +
  '         [--allow-unsealed-memory] [--max-memory SIZE] [--negotiation-timeout MS] [--quiet]';

function fail(message: string): never {
  process.stderr.write(`guestmem-vhost-user-blk: ${message}\n${usage}\n`);
  process.exit(2);
}

let args: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      socket: { type: 'string' },
      fd: { type: 'string' },
      image: { type: 'string' },
      'read-only': { type: 'boolean', default: false },
      queues: { type: 'string', default: '1' },
      id: { type: 'string', default: 'guestmem' },
      'no-mem-slots': { type: 'boolean', default: false },
      'allow-unsealed-memory': { type: 'boolean', default: false },
      'max-memory': { type: 'string' },
      'negotiation-timeout': { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  }).values;
}
try {
  args = parse();
} catch (e) {
  fail((e as Error).message);
}
if (args.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
if (args.image === undefined) fail('--image is required');
if ((args.socket === undefined) === (args.fd === undefined)) fail('give exactly one of --socket and --fd');
const queues = Number(args.queues);
const maxMemory = args['max-memory'] === undefined ? undefined : parseSize(args['max-memory']);
const negotiationTimeout = args['negotiation-timeout'] === undefined ? undefined : Number(args['negotiation-timeout']);

/** `1073741824`, `1G`, `512M`: bytes. */
function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text);
  if (m === null) fail(`--max-memory ${text}: give bytes, or a number with K, M, G or T`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' ');
}
const say = (line: string) => {
  if (!args.quiet) process.stderr.write(`guestmem-vhost-user-blk: ${line}\n`);
};

let imageFd: number;
try {
  imageFd = openSync(args.image, args['read-only'] ? 'r' : 'r+');
} catch (e) {
  fail(`cannot open ${args.image}: ${(e as Error).message}`);
}
let server: VhostUserServer;
let session: VhostUserSession | undefined;
try {
  // seg_max follows QEMU's default queue size of 128 (as qemu-storage-daemon's 126): a chain
  // may not be longer than its queue.
  const blk = new VirtioBlk(new FdDisk(imageFd, { readOnly: args['read-only'] }), { id: args.id, queueSize: 128 });
  const device = new VhostUserBlkDevice(blk, { queues });
  const options = {
    onConnect: (s: VhostUserSession) => {
      session = s;
      say('front-end connected');
    },
    onDisconnect: (e: VhostUserError | undefined) =>
      say(`${e === undefined ? 'front-end disconnected' : `connection dropped (${e.code}): ${e.message}`} (${session?.log.marked} pages logged)`),
    onQueueError: (i: number, e: unknown) => say(`queue ${i} stopped: ${(e as Error).message}`),
    protocolFeatures: args['no-mem-slots'] ? PROTOCOL_FEATURES & ~bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) : PROTOCOL_FEATURES,
    allowUnsealedMemory: args['allow-unsealed-memory'],
    maxMemory,
    negotiationTimeout,
  };
  server =
    args.socket !== undefined
      ? VhostUserServer.listen(args.socket, device, options)
      : VhostUserServer.adopt(Number(args.fd), device, options);
  say(`serving ${args.image} (${blk.capacity} sectors${args['read-only'] ? ', read-only' : ''}, ${queues} queue${queues > 1 ? 's' : ''}) on ${args.socket ?? `fd ${args.fd}`}`);
} catch (e) {
  fail((e as Error).message);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    server.close();
    closeSync(imageFd);
    process.exit(0);
  });
}
