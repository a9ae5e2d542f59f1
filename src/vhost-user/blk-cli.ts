#!/usr/bin/env node
/**
 * guestmem-vhost-user-blk: a vhost-user-blk back-end serving a disk image to QEMU. `--help`
 * describes every option.
 *
 * Exit status: 0 after SIGINT/SIGTERM, `--help` or `--version`; 1 for a runtime failure (an
 * image that cannot be opened, a socket path in use, a pidfile that cannot be written), reported
 * on one line; 2 for a usage error, reported with the usage.
 *
 * Then: qemu-system-x86_64 -object memory-backend-memfd,id=mem,size=1G,share=on
 *   -M pc,memory-backend=mem -chardev socket,id=vub,path=PATH -device vhost-user-blk-pci,chardev=vub
 */
import { closeSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { FdDisk } from '../virtio/blk-disk.js';
import { VirtioBlk } from '../virtio/blk.js';
import { MAX_BLK_QUEUES, VhostUserBlkDevice } from './blk-device.js';
import type { VhostUserError } from './errors.js';
import { bit, ProtocolFeature, requestName } from './protocol.js';
import { VhostUserServer } from './server.js';
import { DEFAULT_NEGOTIATION_TIMEOUT, PROTOCOL_FEATURES, type VhostUserSession } from './session.js';

const NAME = 'guestmem-vhost-user-blk';

const usage =
  `usage: ${NAME} (--socket PATH | --fd N) --image FILE [--read-only] [--queues N] [--id ID]\n` +
  '         [--no-mem-slots] [--allow-unsealed-memory] [--max-memory SIZE] [--negotiation-timeout MS]\n' +
  '         [--pidfile FILE] [--quiet | --verbose]\n' +
  `       ${NAME} --help | --version`;

const help = `${NAME}: serve a disk image to a QEMU VM as a vhost-user-blk device.

${usage}

Where to serve (exactly one):
  --socket PATH              listen on the AF_UNIX socket PATH (a stale socket file is replaced;
                             one that a live back-end serves is refused)
  --fd N                     serve the inherited socket N: a listening one, or one already
                             connected to a front-end

The disk:
  --image FILE               the disk image (a file or block device), opened read-write
  --read-only                open it read-only and refuse writes (VIRTIO_BLK_F_RO)
  --queues N                 request queues offered, 1 to ${MAX_BLK_QUEUES} (default 1)
  --id ID                    the serial the guest reads (VIRTIO_BLK_T_GET_ID, default guestmem)

The front-end:
  --no-mem-slots             do not offer CONFIGURE_MEM_SLOTS, so that the front-end sends its
                             whole memory table at once (SET_MEM_TABLE)
  --allow-unsealed-memory    map guest memory and log fds that are not sealed against shrinking
                             (a regular file, an unsealed memfd); only for a trusted front-end:
                             truncating such a file kills this process with SIGBUS
  --max-memory SIZE          the most guest memory a front-end may map, in bytes or with K, M, G
                             or T (default 1T)
  --negotiation-timeout MS   drop a connection that has not sent SET_OWNER after MS milliseconds
                             (default ${DEFAULT_NEGOTIATION_TIMEOUT}; 0 waits forever)

This process:
  --pidfile FILE             write the process id to FILE once the socket listens (removed at exit)
  -q, --quiet                log errors only
  -v, --verbose              log debug lines too, with a trace of every protocol message
  -h, --help                 show this help and exit
  -V, --version              show the version and exit

Guest RAM must be shared with the back-end: QEMU's memory-backend-memfd with share=on.
Log lines go to stderr as "${NAME}: LEVEL: message" (LEVEL: error, warn, info, debug).
Exit status: 0 on SIGINT or SIGTERM, 1 on a runtime failure, 2 on a usage error.
`;

/** A usage error: exit 2 with the usage. */
function usageError(message: string): never {
  process.stderr.write(`${NAME}: ${message}\n${usage}\nTry '${NAME} --help' for more.\n`);
  process.exit(2);
}

/** A runtime failure: exit 1 with one line. */
function fatal(message: string): never {
  process.stderr.write(`${NAME}: error: ${message}\n`);
  process.exit(1);
}

function parse() {
  try {
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
        pidfile: { type: 'string' },
        quiet: { type: 'boolean', short: 'q', default: false },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    }).values;
  } catch (e) {
    usageError((e as Error).message);
  }
}

/** A whole number in `[min, max]` given to `option`, or a usage error. */
function integer(option: string, text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= min && n <= max)) usageError(`--${option} ${text}: give a whole number from ${min} to ${max}`);
  return n;
}

/** `1073741824`, `1G`, `512M`: bytes. */
function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text);
  if (m === null) usageError(`--max-memory ${text}: give bytes, or a number with K, M, G or T`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' ');
}

const args = parse();
if (args.help) {
  process.stdout.write(help);
  process.exit(0);
}
if (args.version) {
  const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
  process.stdout.write(`${NAME} ${version}\n`);
  process.exit(0);
}
if (args.image === undefined) usageError('--image is required');
if ((args.socket === undefined) === (args.fd === undefined)) usageError('give exactly one of --socket and --fd');
if (args.quiet && args.verbose) usageError('give at most one of --quiet and --verbose');
const queues = integer('queues', args.queues, 1, MAX_BLK_QUEUES);
const inheritedFd = args.fd === undefined ? undefined : integer('fd', args.fd, 0, 0x7fff_ffff);
const maxMemory = args['max-memory'] === undefined ? undefined : parseSize(args['max-memory']);
const negotiationTimeout =
  args['negotiation-timeout'] === undefined ? undefined : integer('negotiation-timeout', args['negotiation-timeout'], 0, 2 ** 31 - 1);

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 } as const;
const threshold = args.quiet ? LEVELS.error : args.verbose ? LEVELS.debug : LEVELS.info;
const log = (level: keyof typeof LEVELS, line: string) => {
  if (LEVELS[level] <= threshold) process.stderr.write(`${NAME}: ${level}: ${line}\n`);
};

let imageFd: number;
try {
  imageFd = openSync(args.image, args['read-only'] ? 'r' : 'r+');
} catch (e) {
  fatal(`cannot open ${args.image}: ${(e as Error).message}`);
}
let server: VhostUserServer;
let blk: VirtioBlk;
let session: VhostUserSession | undefined;
try {
  // seg_max follows QEMU's default queue size of 128 (as qemu-storage-daemon's 126): a chain
  // may not be longer than its queue.
  blk = new VirtioBlk(new FdDisk(imageFd, { readOnly: args['read-only'] }), { id: args.id, queueSize: 128 });
  const device = new VhostUserBlkDevice(blk, { queues });
  const options = {
    onConnect: (s: VhostUserSession) => {
      session = s;
      log('info', 'front-end connected');
    },
    // The pages the session logged for a migration: the migration test reads them here.
    onDisconnect: (e: VhostUserError | undefined) => {
      const logged = `(${session?.log.marked} pages logged)`;
      if (e === undefined) log('info', `front-end disconnected ${logged}`);
      else log('error', `connection dropped (${e.code}): ${e.message} ${logged}`);
    },
    onQueueError: (i: number, e: unknown) => log('error', `queue ${i} stopped: ${(e as Error).message}`),
    onMessage: args.verbose
      ? (request: number, size: number, fds: number) =>
          log('debug', `<- ${requestName(request)} (${size} bytes${fds > 0 ? `, ${fds} fd${fds > 1 ? 's' : ''}` : ''})`)
      : undefined,
    protocolFeatures: args['no-mem-slots'] ? PROTOCOL_FEATURES & ~bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) : PROTOCOL_FEATURES,
    allowUnsealedMemory: args['allow-unsealed-memory'],
    maxMemory,
    negotiationTimeout,
  };
  server =
    args.socket !== undefined
      ? VhostUserServer.listen(args.socket, device, options)
      : VhostUserServer.adopt(inheritedFd as number, device, options);
} catch (e) {
  fatal((e as Error).message);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log('info', `${signal}: closing the socket and exiting`);
    server.close();
    closeSync(imageFd);
    if (args.pidfile !== undefined) {
      try {
        unlinkSync(args.pidfile);
      } catch {}
    }
    process.exit(0);
  });
}

// The pidfile appears only once the socket listens (and SIGTERM is handled), so that whoever
// waits for it can connect, or stop this process cleanly.
if (args.pidfile !== undefined) {
  try {
    const tmp = `${args.pidfile}.${process.pid}.tmp`;
    writeFileSync(tmp, `${process.pid}\n`);
    renameSync(tmp, args.pidfile);
  } catch (e) {
    server.close();
    fatal(`cannot write the pidfile: ${(e as Error).message}`);
  }
}
log(
  'info',
  `serving ${args.image} (${blk.capacity} sectors${args['read-only'] ? ', read-only' : ''}, ${queues} queue${queues > 1 ? 's' : ''}) on ${args.socket ?? `fd ${inheritedFd}`}`,
);
