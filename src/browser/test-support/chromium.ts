/**
 * Debian's chromium, headless, opening one URL; the page reports back over HTTP (see
 * server.ts), so nothing drives the browser. Never downloads a browser.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The chromium binary, or why there is none (for the skip message). */
export function findChromium(): { path: string } | { missing: string } {
  for (const path of ['chromium', 'chromium-browser']) {
    const r = spawnSync(path, ['--version'], { encoding: 'utf8' });
    if (r.error === undefined && r.status === 0) return { path };
  }
  return { missing: "no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)" };
}

/** A running headless chromium: what it wrote to stderr, and a way to stop it. */
export interface Browser {
  readonly output: () => string;
  close(): Promise<void>;
}

/** Opens `url` in a fresh headless chromium with a throw-away profile. */
export function openPage(chromium: string, url: string): Browser {
  const profile = mkdtempSync(join(tmpdir(), 'guestmem-chromium-'));
  const args = [
    '--headless=new',
    '--no-sandbox', // the sandbox needs user namespaces, which CI containers (running as root) lack
    '--disable-gpu',
    '--no-first-run',
    '--disable-extensions',
    `--user-data-dir=${profile}`,
    url,
  ];
  // Its own process group: Debian's wrapper script and chromium's helpers all go with it.
  const child: ChildProcess = spawn(chromium, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let output = '';
  child.stderr?.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    output: () => output,
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {}
      }
      await exited;
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
