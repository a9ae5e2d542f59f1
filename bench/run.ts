/**
 * `npm run bench`: guestmem's peer harness on heap and on mmap memory, plain Node typed arrays
 * as the baseline, and the overhead figures; prints the side-by-side table.
 *
 * `npm run bench:peer`: the same two guestmem runs after ../shared/peer-bench/run.sh (Rust
 * vm-memory, C, Node raw) in one invocation; the raw RESULT files go to bench/results/<UTC stamp>/.
 * The peer harness is found at $PEER_BENCH_DIR, else at ../shared/peer-bench from the repository
 * root. It needs Debian's librust-vm-memory-dev (run.sh says so when it is missing); nothing is
 * installed from here.
 *
 * Knobs: PB_REPS, PB_MIN_MS, PB_WARM_MS, PB_FILTER (passed to every harness), PB_ONLY (peer
 * harnesses), BENCH_OUT_DIR (where the .tsv files go).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { render } from './table.js';

const here = dirname(fileURLToPath(import.meta.url)); // build/bench
const root = resolve(here, '..', '..');
const peer = process.argv.includes('--peer');
const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
const outDir = resolve(process.env.BENCH_OUT_DIR ?? (peer ? join(root, 'bench', 'results', stamp) : join(tmpdir(), `guestmem-bench-${stamp}`)));
mkdirSync(outDir, { recursive: true });

/** Runs a command with stdout into `file` (when given), stderr passed through; exits on failure. */
function step(what: string, cmd: string, args: string[], file?: string, env: NodeJS.ProcessEnv = process.env): void {
  console.error(`${what} ...`);
  const fd = file === undefined ? 'inherit' : openSync(file, 'w');
  const r = spawnSync(cmd, args, { stdio: ['ignore', fd, 'inherit'], env });
  if (typeof fd === 'number') closeSync(fd);
  if (r.status !== 0) {
    console.error(`${what} failed (${r.error?.message ?? `exit ${r.status}`})`);
    process.exit(1);
  }
}

const files: string[] = [];
if (peer) {
  const dir = resolve(process.env.PEER_BENCH_DIR ?? join(root, '..', 'shared', 'peer-bench'));
  if (!existsSync(join(dir, 'run.sh'))) {
    console.error(`no peer harness at ${dir}: set PEER_BENCH_DIR to the peer-bench directory`);
    process.exit(1);
  }
  // run.sh prints its own table on stdout; ours follows.
  step('peer harnesses (run.sh: Rust vm-memory, C, Node raw)', join(dir, 'run.sh'), [], join(outDir, 'peer-run.txt'), { ...process.env, PB_OUT_DIR: outDir });
  for (const name of (process.env.PB_ONLY ?? 'rust c node').split(/\s+/).filter(Boolean)) files.push(join(outDir, `${name}.tsv`));
}
for (const mode of ['heap', 'mmap', ...(peer ? [] : ['raw'])]) {
  const file = join(outDir, `${mode === 'heap' ? 'guestmem' : mode === 'mmap' ? 'guestmem-mmap' : 'raw'}.tsv`);
  step(`guestmem harness on ${mode} memory`, process.execPath, [join(here, 'peer.js'), mode], file);
  files.push(file);
}
if (!process.env.PB_FILTER) {
  const file = join(outDir, 'overhead.tsv');
  step('overhead figures', process.execPath, ['--expose-gc', join(here, 'overhead.js')], file);
}
const table = render(files);
writeFileSync(join(outDir, 'guestmem-table.md'), `${table}\n`);
console.log(table);
console.log(`\nraw results: ${outDir}`);
