// docs/runtime.md's code cannot rot: every ```ts block is written into a scratch directory inside
// the repository (so `echo-operator/runtime` resolves by the package's self-reference, as it does
// for a user's code) and type-checked by the project's tsc, under the project's compiler options.
// A block stands alone as a module, unless its fence names a file (```ts mirror.ts): the blocks
// naming one file are joined, a blank line between them, into that file, which other blocks may
// import (`./mirror.ts`). Samples import only the public API and node: builtins, never src/; the
// mirror, shown in sections, must be examples/configmap-mirror/mirror.ts to the byte.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '../..');
const DOC = 'docs/runtime.md';
/** Ignored by git (.gitignore): each run works in a directory of its own below it. */
const SCRATCH = join(ROOT, 'test/.samples');
/** The file a block's fence names, and what it must equal. */
const EMBEDDED: Record<string, string> = { 'mirror.ts': 'examples/configmap-mirror/mirror.ts' };

interface Sample {
  /** The file the block is written to. */
  file: string;
  /** Where its (first) block starts in the doc, 1-based. */
  line: number;
  text: string;
}

/** The doc's ```ts blocks as files: one each, or joined by the file their fences name. */
function samplesOf(markdown: string): Sample[] {
  const samples = new Map<string, Sample>();
  let unnamed = 0;
  for (const match of markdown.matchAll(/^```ts(?:[ \t]+(\S+))?[ \t]*\n([\s\S]*?)^```[ \t]*$/gm)) {
    const line = markdown.slice(0, match.index).split('\n').length;
    const [, name, text = ''] = match;
    const file = name ?? `sample-${String(++unnamed).padStart(2, '0')}.ts`;
    const known = samples.get(file);
    if (known) known.text += `\n${text}`;
    else samples.set(file, { file, line, text });
  }
  return [...samples.values()];
}

/** Every module specifier of `text`, as TypeScript reads them: imports, re-exports, `import()`. */
function specifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

const tsc = join(ROOT, 'node_modules/.bin/tsc');

describe(`${DOC}: its code samples`, () => {
  const samples = samplesOf(readFileSync(join(ROOT, DOC), 'utf8'));
  let dir: string;

  before(() => {
    mkdirSync(SCRATCH, { recursive: true });
    dir = mkdtempSync(join(SCRATCH, 'run-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
    try {
      rmdirSync(SCRATCH); // only if no other run is using it
    } catch {
      // another run's directory is still there
    }
  });

  it('has samples, each a module of its own file', () => {
    assert.ok(samples.length >= 5, `only ${String(samples.length)} ts blocks in ${DOC}`);
    for (const s of samples) assert.match(s.file, /^[a-z0-9-]+\.ts$/, `${DOC}:${String(s.line)}`);
  });

  it('embeds each example file whole, in order, unchanged', () => {
    for (const [file, source] of Object.entries(EMBEDDED)) {
      const sample = samples.find((s) => s.file === file);
      assert.ok(sample, `${DOC} shows no block of ${file}`);
      const shown = sample.text.split('\n');
      const real = readFileSync(join(ROOT, source), 'utf8').split('\n');
      const line = real.findIndex((l, i) => l !== shown[i]);
      const at = line < 0 ? shown.length : line;
      assert.ok(
        line < 0 && shown.length === real.length,
        `${DOC}'s ${file} blocks differ from ${source} at its line ${String(at + 1)}:\n` +
          `  doc:  ${shown[at] ?? '(end)'}\n  file: ${real[at] ?? '(end)'}`,
      );
    }
  });

  it('imports only echo-operator/runtime, node: builtins and its own named samples', () => {
    const named = new Set(samples.map((s) => `./${s.file}`));
    for (const s of samples) {
      for (const specifier of specifiers(s.text)) {
        const allowed =
          specifier === 'echo-operator/runtime' ||
          specifier.startsWith('node:') ||
          (named.has(specifier) && specifier !== `./${s.file}`);
        assert.ok(allowed, `${DOC}:${String(s.line)} (${s.file}) imports '${specifier}'`);
      }
    }
  });

  it('type-checks with the project’s tsc and compiler options', async (t) => {
    for (const s of samples) writeFileSync(join(dir, s.file), s.text);
    const base = relative(dir, join(ROOT, 'tsconfig.json'));
    const tsconfig = { extends: base, compilerOptions: { noEmit: true }, include: ['*.ts'] };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const args = ['-p', join(dir, 'tsconfig.json'), '--pretty', 'false'];
    const output = await promisify(execFile)(tsc, args, { cwd: ROOT }).then(
      () => '',
      (err: unknown) => {
        const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
        return `${stdout}${stderr}`.trim() || String(err);
      },
    );
    // tsc checks what the samples import too; src/'s own errors are `make lint`'s to report.
    const scratch = relative(ROOT, dir);
    const elsewhere = (line: string): boolean =>
      /^\S+\(\d+,\d+\): error/.test(line) && !line.startsWith(scratch);
    const errors = output.split('\n').filter((line) => line && !elsewhere(line));
    const ignored = output.split('\n').filter(elsewhere);
    if (ignored.length > 0)
      t.diagnostic(`errors outside the samples, not this test's:\n${ignored.join('\n')}`);
    const where = samples.map((s) => `  ${s.file}: ${DOC}:${String(s.line)}`).join('\n');
    assert.deepEqual(errors, [], `tsc: errors in ${DOC}'s samples (written to):\n${where}`);
  });
});
