/**
 * The nested-KVM rig (scripts/build-kvm-rig.sh): QEMU (TCG) emulates an AMD CPU with SVM, a
 * Linux guest loads kvm-amd, and guestmem's KVM tests run inside it on that real KVM with this
 * machine's Node (scripts/kvm-rig-init.sh). This module builds the rig, boots it and reads the
 * inner test results off the serial console.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
/** Where scripts/build-kvm-rig.sh leaves the rig (gitignored). */
export const RIG_DIR = `${root}.cache/kvm-rig`;
/** The exit code of the build scripts when the kernel or busybox package cannot be had (scripts/guest-lib.sh). */
const UNAVAILABLE = 3;
const MARK = 'GUESTMEM-RIG: ';

/** Why the rig cannot run here (no QEMU, no kernel package), or undefined once it is built. Throws on any other build failure. */
export function buildRig(): string | undefined {
  const q = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  if (q.error !== undefined || q.status !== 0) return 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)';
  const b = spawnSync('bash', [`${root}scripts/build-kvm-rig.sh`, RIG_DIR], { encoding: 'utf8' });
  const said = (b.stderr || b.stdout).trim();
  if (b.status === UNAVAILABLE) return `the rig's packages cannot be had: ${said.split('\n').at(-1)}`;
  if (b.status !== 0) throw new Error(`scripts/build-kvm-rig.sh failed (${b.status ?? b.signal}): ${said}`);
  return undefined;
}

/** The summary counts of a TAP run (`# tests N` ...). */
export interface TapCounts {
  readonly tests: number;
  readonly pass: number;
  readonly fail: number;
  readonly cancelled: number;
  readonly skipped: number;
  readonly todo: number;
}

/** One failed test: its name with its suites (`suite > test`) and its error message. */
export interface TapFailure {
  readonly name: string;
  readonly error: string;
}

/** What the inner run printed between its markers. */
export interface RigResult {
  /** The `GUESTMEM-RIG: kvm ...` line's fields (kernel, module, dev_kvm, nested, npt, tdp_mmu, cpu, svm). */
  readonly kvm: Readonly<Record<string, string>>;
  /** Whether the begin marker was seen. */
  readonly began: boolean;
  /** The inner `node --test` exit status; undefined without an end marker (the run died or hung). */
  readonly exitCode: number | undefined;
  /** Undefined when the TAP summary is missing. */
  readonly counts: TapCounts | undefined;
  /** Every failed test, suites that failed only through their subtests left out. */
  readonly failures: readonly TapFailure[];
  /** Every skipped test with its reason. */
  readonly skips: readonly TapFailure[];
  /** Lines of the console that the rig printed for the host (`insmod ... failed`, ...), besides the markers. */
  readonly notes: readonly string[];
}

function fields(line: string): Record<string, string> {
  return Object.fromEntries(
    line
      .split(' ')
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

/** The YAML `error:` of a TAP diagnostic block starting after line `at`, quoted or `|-` block. */
function yamlError(lines: readonly string[], at: number, indent: number): { error: string; failureType: string } {
  const pad = ' '.repeat(indent + 2);
  let error = '';
  let failureType = '';
  for (let i = at + 1; i < lines.length && lines[i].startsWith(pad) && lines[i].trim() !== '...'; i++) {
    const l = lines[i].slice(pad.length);
    if (l.startsWith('failureType: ')) failureType = l.slice(13).replace(/^'|'$/g, '');
    if (l === 'error: |-') {
      const body: string[] = [];
      for (let j = i + 1; j < lines.length && lines[j].startsWith(`${pad}  `); j++) body.push(lines[j].slice(pad.length + 2));
      error = body.join('\n').trim();
    } else if (l.startsWith('error: ')) {
      error = l.slice(7).replace(/^'|'$/g, '').replace(/''/g, "'");
    }
  }
  return { error, failureType };
}

/** Parses the rig's console output (kernel messages, markers, and node's TAP between them). */
export function parseRigConsole(console: string): RigResult {
  const all = console.split(/\r?\n/);
  const begin = all.findIndex((l) => l.startsWith(`${MARK}begin`));
  const end = all.findIndex((l) => l.startsWith(`${MARK}end `));
  const kvmLine = all.find((l) => l.startsWith(`${MARK}kvm `));
  const notes = all.filter((l) => l.startsWith(MARK) && !/^GUESTMEM-RIG: (kvm|begin|end) /.test(`${l} `)).map((l) => l.slice(MARK.length));
  const tap = begin < 0 ? [] : all.slice(begin + 1, end < 0 ? undefined : end);
  const counts: Record<string, number> = {};
  const failures: TapFailure[] = [];
  const skips: TapFailure[] = [];
  const suites: string[] = [];
  tap.forEach((line, i) => {
    const sub = /^( *)# Subtest: (.*)$/.exec(line);
    if (sub) {
      suites.length = sub[1].length / 4;
      suites.push(sub[2]);
      return;
    }
    const count = /^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line);
    if (count) counts[count[1]] = Number(count[2]);
    const result = /^( *)(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$/.exec(line);
    if (!result) return;
    const depth = result[1].length / 4;
    const name = [...suites.slice(0, depth), result[3]].join(' > ');
    if (result[2] === 'not ok') {
      const { error, failureType } = yamlError(tap, i, result[1].length);
      if (failureType !== 'subtestsFailed') failures.push({ name, error });
    } else if (result[4] === 'SKIP') {
      skips.push({ name, error: result[5] ?? '' });
    }
  });
  const complete = ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'].every((k) => k in counts);
  return {
    kvm: kvmLine === undefined ? {} : fields(kvmLine.slice(MARK.length + 4)),
    began: begin >= 0,
    exitCode: end < 0 ? undefined : Number(fields(all[end]).exit),
    counts: complete ? (counts as unknown as TapCounts) : undefined,
    failures,
    skips,
    notes,
  };
}

/** One boot of the rig. */
export interface RigRun {
  readonly result: RigResult;
  /** QEMU's exit code (null when it was killed at the timeout). */
  readonly qemuExit: number | null;
  readonly timedOut: boolean;
  readonly seconds: number;
  /** The whole console output. */
  readonly console: string;
}

/** The host's TSC frequency in kHz: TSC calibration hangs under TCG with SVM without `tsc_early_khz`. */
function tscKhz(): number | undefined {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return mhz ? Math.round(Number(mhz[1]) * 1000) : undefined;
}

/**
 * Boots the built rig and waits for it to power off. The guest's watchdog ends a hung run 30 s
 * before `timeoutMs`, printing what every task was doing; QEMU is killed at `timeoutMs`.
 */
export async function runRig(timeoutMs: number): Promise<RigRun> {
  const khz = tscKhz();
  const t0 = performance.now();
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      // One CPU: with -smp 2 the whole guest froze in 4 of 16 runs of the KVM tests (QEMU 7.2 TCG,
      // nested SVM; its watchdog did not run either), with -smp 1 in none of 7. A vCPU in a worker thread
      // is still preempted by the guest kernel's timer, so harvests interleave with its run.
      '-M', 'pc', '-cpu', 'qemu64,+svm,+npt', '-smp', '1', '-m', '2048',
      '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot',
      '-kernel', `${RIG_DIR}/vmlinuz`, '-initrd', `${RIG_DIR}/rig.cpio`,
      '-append', `console=ttyS0 reboot=k panic=1 quiet guestmem.watchdog=${Math.max(1, Math.floor(timeoutMs / 1000) - 30)}${khz === undefined ? '' : ` tsc_early_khz=${khz}`}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  qemu.stdout.on('data', (d) => (out += d));
  qemu.stderr.on('data', (d) => (out += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    qemu.kill('SIGKILL');
  }, timeoutMs);
  const qemuExit = await new Promise<number | null>((resolve) => qemu.once('exit', (code) => resolve(code)));
  clearTimeout(timer);
  return { result: parseRigConsole(out), qemuExit, timedOut, seconds: (performance.now() - t0) / 1000, console: out };
}
