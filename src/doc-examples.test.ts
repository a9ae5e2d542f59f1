/**
 * The `@example` blocks of the TSDoc comments, and the README's TypeScript blocks that import
 * guestmem, run as tests, so that the docs cannot rot.
 *
 * Each block is transpiled and run as a module of its own inside the package, with every export
 * of `guestmem` (and of `guestmem/mmap` or `guestmem/virtio` for blocks in src/mmap/, src/virtio/)
 * in scope (README blocks bring their own imports). A line ending in `// => value` asserts that its expression (or the variable it
 * declares) deep-equals `value`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

const root = new URL('../', import.meta.url).pathname;
const out = join(root, 'build', 'doc-examples');

interface Example {
  file: string;
  line: number;
  code: string;
  /** The block imports what it uses itself. */
  standalone?: boolean;
}

/** The `@example` blocks of the sources under `src/`, outside tests and test helpers. */
function examples(): Example[] {
  const found: Example[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (!e.name.startsWith('test-')) walk(path);
      } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        const lines = readFileSync(path, 'utf8').split('\n');
        for (let i = 0; i < lines.length; i++) {
          if (!/^\s*\* @example\s*$/.test(lines[i])) continue;
          const body: string[] = [];
          for (let j = i + 1; j < lines.length && !/^\s*\*\/|^\s*\* @/.test(lines[j]); j++) body.push(lines[j].replace(/^\s*\* ?/, ''));
          found.push({ file: relative(root, path), line: i + 1, code: body.join('\n') });
        }
      }
    }
  };
  walk(join(root, 'src'));
  const readme = readFileSync(join(root, 'README.md'), 'utf8').split('\n');
  for (let i = 0; i < readme.length; i++) {
    if (readme[i] !== '```ts') continue;
    const end = readme.indexOf('```', i + 1);
    const code = readme.slice(i + 1, end).join('\n');
    if (/ from 'guestmem(\/[\w-]+)?';$/m.test(code)) found.push({ file: 'README.md', line: i + 1, code, standalone: true });
    i = end;
  }
  return found;
}

/** Turns `expr; // => value` and `const x = expr; // => value` lines into assertions. */
function withAssertions(code: string): string {
  return code
    .split('\n')
    .map((line) => {
      const m = /^(\s*)(.*?);?\s*\/\/ => (.+)$/.exec(line);
      if (m === null) return line;
      const [, indent, stmt, expected] = m;
      const decl = /^(?:const|let)\s+(\w+)\s*=/.exec(stmt);
      return decl ? `${indent}${stmt}; __assert.deepStrictEqual(${decl[1]}, ${expected});` : `${indent}__assert.deepStrictEqual(${stmt}, ${expected});`;
    })
    .join('\n');
}

const modules: Record<string, Record<string, unknown>> = {
  guestmem: await import('guestmem'),
  'guestmem/mmap': await import('guestmem/mmap').catch(() => ({})),
  'guestmem/virtio': await import('guestmem/virtio'),
};

describe('documentation examples', () => {
  const all = examples();
  it('finds the examples', () => {
    assert.ok(all.length >= 5, `only ${all.length} @example blocks found`);
    assert.ok(all.some((ex) => ex.file === 'README.md'), 'the README has no TypeScript block to run');
  });
  mkdirSync(out, { recursive: true });
  for (const ex of all) {
    it(`${ex.file}:${ex.line}`, () => {
      const sub = /^src\/(mmap|virtio)\//.exec(ex.file)?.[1];
      const from = sub === undefined ? ['guestmem'] : ['guestmem', `guestmem/${sub}`];
      const prelude = [
        "import __assert from 'node:assert/strict';",
        ...(ex.standalone ? [] : from).map((m, i) => `import * as __m${i} from '${m}';\nconst { ${Object.keys(modules[m]).join(', ')} } = __m${i};`),
      ].join('\n');
      const js = ts.transpileModule(withAssertions(ex.code), {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      }).outputText;
      const path = join(out, `${ex.file.replace(/[/.]/g, '_')}_${ex.line}.mjs`);
      writeFileSync(path, `${prelude}\n${js}\nexport {};\n`);
      execFileSync(process.execPath, [path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    });
  }
});
