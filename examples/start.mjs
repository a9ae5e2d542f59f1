// `npm start`: compiles what changed since the last build (nothing after `npm ci`, which built
// everything) in one TypeScript run, saying so while it works, then runs the tour. Plain
// JavaScript, so that it can speak before the compiler has run.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const started = Date.now();
const say = (line) => process.stderr.write(`npm start: ${line}\n`);
say('compiling TypeScript (src/ to dist/, examples/ to build/) where it changed since the last build...');
// A line every few seconds: a first compile takes 15 s or more on a busy machine.
const ticker = setInterval(() => say(`still compiling (${Math.round((Date.now() - started) / 1000)} s)`), 5000);
const compile = spawn(process.execPath, [tsc, '-b', 'tsconfig.json', 'tsconfig.tools.json'], { stdio: 'inherit' });
compile.on('exit', (code) => {
  clearInterval(ticker);
  if (code !== 0) {
    say(`the TypeScript compile failed (exit status ${code})`);
    process.exit(1);
  }
  say(`compiled in ${((Date.now() - started) / 1000).toFixed(1)} s; starting the tour`);
  const tour = spawn(process.execPath, [new URL('../build/examples/tour.js', import.meta.url).pathname], { stdio: 'inherit' });
  tour.on('exit', (status) => process.exit(status ?? 1));
});
