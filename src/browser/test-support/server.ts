/**
 * A loopback HTTP server for guestmem in a browser: the compiled package (dist/) as native ES
 * modules, resolved through an import map made from package.json's `browser` export conditions
 * (no bundler), HTML pages with that import map put in, and a POST endpoint where a page reports
 * what it found. With `isolated`, every response carries the headers that make a page
 * cross-origin isolated (and so give it SharedArrayBuffer).
 */
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (dist/ and the pages are read from here). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The headers that make a page cross-origin isolated. */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
} as const;

/** A running server. */
export interface PageServer {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  /** The body of each POST to /result, parsed as JSON, in order. */
  readonly results: unknown[];
  /** Resolves at the next POST to /result (or one already received that nobody took yet). */
  nextResult(): Promise<unknown>;
  close(): Promise<void>;
}

/** `{ "guestmem": "/dist/index.js", "guestmem/virtio": "/dist/virtio/index.js", … }` */
export function importMap(): { imports: Record<string, string> } {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    name: string;
    exports: Record<string, string | { browser?: { default: string }; default?: string }>;
  };
  const imports: Record<string, string> = {};
  for (const [key, target] of Object.entries(pkg.exports)) {
    const file = typeof target === 'string' ? target : (target.browser?.default ?? target.default);
    if (file === undefined || !file.endsWith('.js')) continue;
    imports[pkg.name + key.slice(1)] = file.slice(1);
  }
  return { imports };
}

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.html': 'text/html', '.json': 'application/json', '.css': 'text/css' };

/**
 * Serves `pages` (URL path -> HTML file under ROOT, whose `<!-- importmap -->` is replaced by the
 * import map) and every file under the `dirs` of ROOT (default dist/) on 127.0.0.1.
 */
export async function servePages(options: {
  pages: Record<string, string>;
  dirs?: string[];
  isolated: boolean;
  /** Default: any free port. */
  port?: number;
}): Promise<PageServer> {
  const dirs = options.dirs ?? ['dist'];
  const results: unknown[] = [];
  const waiting: ((r: unknown) => void)[] = [];
  let taken = 0;
  const map = `<script type="importmap">${JSON.stringify(importMap())}</script>`;
  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer) => {
    res.writeHead(status, {
      'Content-Type': type,
      'Cache-Control': 'no-store',
      ...(options.isolated ? { ...ISOLATION_HEADERS, 'Cross-Origin-Resource-Policy': 'same-origin' } : {}),
    });
    res.end(body);
  };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (req.method === 'POST' && path === '/result') {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        let value: unknown;
        try {
          value = JSON.parse(body);
        } catch {
          value = { error: `not JSON: ${body.slice(0, 200)}` };
        }
        results.push(value);
        waiting.shift()?.(results[taken++]);
        send(res, 204, 'text/plain', '');
      });
      return;
    }
    const page = options.pages[path];
    if (page !== undefined) {
      send(res, 200, TYPES['.html'], readFileSync(join(ROOT, page), 'utf8').replace('<!-- importmap -->', map));
      return;
    }
    const file = normalize(join(ROOT, path));
    const allowed = dirs.some((d) => file.startsWith(join(ROOT, d) + sep));
    let body: Buffer | undefined;
    try {
      body = allowed ? readFileSync(file) : undefined;
    } catch {}
    if (body === undefined) send(res, 404, 'text/plain', `not found: ${path}`);
    else send(res, 200, TYPES[extname(file)] ?? 'application/octet-stream', body);
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    results,
    nextResult: () =>
      taken < results.length ? Promise.resolve(results[taken++]) : new Promise((resolve) => waiting.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
