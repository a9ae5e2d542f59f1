import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  license: string;
  exports: Record<string, unknown>;
  repository?: unknown;
};
const entries = Object.keys(pkg.exports).filter((k) => k !== './package.json');

/** The relative modules a compiled module imports statically, and the bare ones (`node:fs`). */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\b[^;]*?from\s+'([^']+)';|^import\s+'([^']+)';/gm)].map((m) => m[1] ?? m[2]);
}

/** Every bare specifier in the static import graph of `entry`, with the module that imports it. */
function bareImports(entry: string): string[] {
  const seen = new Set<string>();
  const bare: string[] = [];
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) walk(join(dirname(file), spec));
      else bare.push(`${spec} (from ${relative(root, file)})`);
    }
  };
  walk(join(root, entry));
  return bare;
}

describe('the package', () => {
  test('every entry point works from CommonJS require() as from import', () => {
    // A child process: require() of the package by its own name, as a CommonJS user writes it.
    const script = `
      const entries = ${JSON.stringify(entries)};
      const out = {};
      for (const e of entries) {
        const name = 'guestmem' + e.slice(1);
        try { out[e] = { keys: Object.keys(require(name)).sort() }; }
        catch (err) { out[e] = { code: err.code, message: err.message }; }
      }
      Promise.all(entries.map((e) => import('guestmem' + e.slice(1)).then((m) => Object.keys(m).sort(), (err) => ({ code: err.code }))))
        .then((imported) => { entries.forEach((e, i) => (out[e].imported = imported[i])); console.log(JSON.stringify(out)); });`;
    const result = JSON.parse(
      execFileSync(process.execPath, ['--no-warnings', '-e', script], { cwd: root, encoding: 'utf8' }),
    ) as Record<string, { keys?: string[]; code?: string; message?: string; imported: string[] | { code?: string } }>;
    for (const e of entries) {
      const r = result[e];
      if (r.keys === undefined) {
        // An entry may be unusable on this machine (no addon, no /dev/kvm): then it must say so
        // with a typed error, the same one import() gives, never ERR_REQUIRE_ASYNC_MODULE.
        assert.notEqual(r.code, 'ERR_REQUIRE_ASYNC_MODULE', `${e}: ${r.message}`);
        assert.match(String(r.code), /^ERR_/, `${e}: ${r.message}`);
        assert.deepEqual(r.imported, { code: r.code }, e);
      } else {
        assert.ok(r.keys.length > 0, `${e} exports nothing`);
        assert.deepEqual(r.keys, r.imported, `${e}: require() and import() differ`);
      }
    }
    for (const e of ['.', './virtio']) assert.ok(result[e].keys !== undefined, `${e} must load here: ${result[e].message}`);
  });

  test('Node resolves guestmem to guestmem/node, which adds the snapshot files to the root entry', async () => {
    const [rootEntry, nodeEntry] = await Promise.all([import('guestmem'), import('guestmem/node')]);
    assert.equal(rootEntry, nodeEntry);
    assert.equal(typeof rootEntry.writeFullSnapshot, 'function');
  });

  test('the browser entries import nothing from Node.js', () => {
    const exp = pkg.exports as Record<string, { browser?: { default: string }; default?: string }>;
    assert.equal(exp['.'].browser?.default, './dist/index.js');
    for (const entry of ['dist/index.js', 'dist/virtio/index.js']) {
      assert.deepEqual(bareImports(entry), [], entry);
    }
    // The check itself sees Node imports where there are some.
    assert.ok(bareImports('dist/node.js').some((b) => b.startsWith('node:fs')));
  });

  test('ships its licence, changelog and the sources its maps point at, and no tests', () => {
    assert.equal(pkg.license, 'Apache-2.0');
    const license = readFileSync(join(root, 'LICENSE'), 'utf8');
    assert.match(license, /Apache License\s+Version 2\.0, January 2004/);
    assert.match(license, /END OF TERMS AND CONDITIONS/);
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
    ) as { files: { path: string }[] }[];
    const files = new Set(packed[0].files.map((f) => f.path));
    for (const f of ['LICENSE', 'CHANGELOG.md', 'README.md', 'native/install.mjs', 'dist/index.js', 'dist/node.js']) {
      assert.ok(files.has(f), `${f} is not in the package`);
    }
    assert.deepEqual([...files].filter((f) => /\.test\.|test-support|test-workers/.test(f)), []);
    const maps = [...files].filter((f) => f.endsWith('.map'));
    assert.ok(maps.length > 0);
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(root, map), 'utf8')) as { sources: string[] };
      for (const s of sources) {
        const target = normalize(join(dirname(map), s));
        assert.ok(files.has(target), `${map} points at ${target}, which is not in the package`);
      }
    }
    // Relative links in the packaged README must lead to packaged files.
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    for (const [, target] of readme.matchAll(/\]\((?!https?:|#|mailto:)([^)#\s]+)/g)) {
      assert.ok(files.has(normalize(target)), `README links to ${target}, which is not in the package`);
    }
  });
});
