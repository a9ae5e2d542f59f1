// `npm run demo:browser`: serves the live demo (examples/browser/) and the compiled package on
// http://127.0.0.1:8080 (PORT=... for another), cross-origin isolated (NOT_ISOLATED=1 for an
// ordinary page). It uses the browser test's static server, so run `npm run build` first
// (the npm script does).
import { servePages } from '../../dist/browser/test-support/server.js';

const server = await servePages({
  pages: { '/': 'examples/browser/index.html' },
  dirs: ['dist', 'examples/browser'],
  isolated: process.env.NOT_ISOLATED !== '1',
  port: Number(process.env.PORT ?? 8080),
});
console.log(`guestmem demo: open ${server.origin}/ in a browser (Ctrl-C stops)`);
