// The floors of src/, lowest first, and the rules between them: a file imports only from its own
// floor or lower ones; floor 1's two subsystems, kube and http, do not import each other; and no
// import circle exists among the files, but for the type-only one between echo/api.ts and
// echo/crd.ts (the Echo types are derived from the CRD's schemas). Imports are read with the
// TypeScript parser: static imports and re-exports (type-only or not), and dynamic `import()`.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '../..');

/** Each floor with the files on it, lowest first; every file of src/ must be on one. */
const FLOORS: { name: string; holds: (file: string) => boolean }[] = [
  {
    name: 'floor 0 (version, telemetry)',
    holds: (f) => f === 'src/version.ts' || f.startsWith('src/telemetry/'),
  },
  {
    name: 'floor 1 (kube, http)',
    holds: (f) => f.startsWith('src/kube/') || f.startsWith('src/http/'),
  },
  { name: 'floor 2 (runtime)', holds: (f) => f.startsWith('src/runtime/') },
  { name: 'floor 3 (echo)', holds: (f) => f.startsWith('src/echo/') },
  {
    name: 'floor 4 (main, config)',
    holds: (f) => /^src\/[^/]+\.ts$/.test(f) && f !== 'src/version.ts',
  },
];

/** The one circle allowed: api.ts reads its types from crd.ts, which reads api.ts's constants. */
const ALLOWED_TYPE_ONLY_EDGE = { from: 'src/echo/api.ts', to: 'src/echo/crd.ts' };

interface Import {
  from: string;
  to: string;
  specifier: string;
  line: number;
  /** Erased when the file runs: `import type`, `export type`, `typeof import('...')`. */
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every import of `file` (relative to the repository), relative ones resolved to a path. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const add = (node: ts.Node, specifier: ts.Expression | undefined, typeOnly: boolean): void => {
    if (!specifier || !ts.isStringLiteralLike(specifier)) return;
    const name = specifier.text;
    if (!name.startsWith('.')) return;
    const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    const to = relative(ROOT, resolve(ROOT, dirname(file), name));
    found.push({ from: file, to, specifier: name, line, typeOnly });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      add(
        node,
        node.moduleSpecifier,
        node.importClause?.phaseModifier === ts.SyntaxKind.TypeKeyword,
      );
    } else if (ts.isExportDeclaration(node)) {
      add(node, node.moduleSpecifier, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0], false);
    } else if (ts.isImportTypeNode(node)) {
      const argument = node.argument;
      if (ts.isLiteralTypeNode(argument)) add(node, argument.literal, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function floorOf(file: string): number {
  const floor = FLOORS.findIndex((f) => f.holds(file));
  assert.notEqual(floor, -1, `${file} is on no floor: add it to FLOORS in architecture.test.ts`);
  return floor;
}

const where = (i: Import): string => `${i.from}:${i.line} imports '${i.specifier}'`;

/** Each import of one src file by another on a higher floor. */
function upwardImports(imports: Import[]): string[] {
  return imports
    .filter((i) => floorOf(i.to) > floorOf(i.from))
    .map(
      (i) =>
        `${where(i)}: ${FLOORS[floorOf(i.from)]?.name} may not import ${FLOORS[floorOf(i.to)]?.name}`,
    );
}

/** Each import between kube and http, the two subsystems of floor 1. */
function crossImports(imports: Import[]): string[] {
  const subsystem = (f: string): string | undefined => /^src\/(kube|http)\//.exec(f)?.[1];
  return imports
    .filter((i) => {
      const a = subsystem(i.from);
      const b = subsystem(i.to);
      return a !== undefined && b !== undefined && a !== b;
    })
    .map((i) => `${where(i)}: src/kube and src/http do not import each other`);
}

/**
 * Each import circle among `files`, as its path of imports: a depth-first search that reports
 * the circle closed by each edge back to a file still on the path. The allowed api.ts -> crd.ts
 * edge is left out when it is type-only (and reported when it is not).
 */
function circles(files: string[], imports: Import[]): string[] {
  const problems: string[] = [];
  const edges = new Map<string, Import[]>(files.map((f) => [f, []]));
  for (const i of imports) {
    const allowed = i.from === ALLOWED_TYPE_ONLY_EDGE.from && i.to === ALLOWED_TYPE_ONLY_EDGE.to;
    if (allowed && i.typeOnly) continue;
    if (allowed) problems.push(`${where(i)}: the api.ts -> crd.ts import must be \`import type\``);
    edges.get(i.from)?.push(i);
  }
  const state = new Map<string, 'open' | 'done'>();
  const path: Import[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    for (const edge of edges.get(file) ?? []) {
      const seen = state.get(edge.to);
      if (seen === 'done') continue;
      path.push(edge);
      if (seen === 'open') {
        const start = path.findIndex((e) => e.from === edge.to);
        const cycle = path.slice(start);
        problems.push(
          `import circle: ${cycle.map((e) => e.from).join(' -> ')} -> ${edge.to} (${cycle.map(where).join('; ')})`,
        );
      } else {
        visit(edge.to);
      }
      path.pop();
    }
    state.set(file, 'done');
  };
  for (const file of files) if (!state.has(file)) visit(file);
  return problems;
}

describe('architecture', () => {
  const files = sourceFiles('src').sort();
  const imports = files.flatMap((f) => importsOf(f, readFileSync(join(ROOT, f), 'utf8')));

  it('reads the imports of every file', () => {
    assert.ok(files.length > 30, `only ${files.length} files under src/`);
    assert.ok(imports.length > 50, `only ${imports.length} relative imports under src/`);
    for (const i of imports) {
      assert.ok(files.includes(i.to), `${where(i)}: no such file under src/`);
    }
  });

  it('puts every file of src/ on exactly one floor', () => {
    for (const file of files) {
      const floors = FLOORS.filter((f) => f.holds(file)).map((f) => f.name);
      assert.equal(floors.length, 1, `${file} is on ${floors.length} floors: ${floors.join(', ')}`);
    }
  });

  it('imports nothing from a higher floor', () => {
    const problems = upwardImports(imports);
    assert.deepEqual(problems, [], `imports from a higher floor:\n${problems.join('\n')}`);
  });

  it('keeps kube and http apart', () => {
    const problems = crossImports(imports);
    assert.deepEqual(problems, [], `imports between kube and http:\n${problems.join('\n')}`);
  });

  it('has no import circle but the type-only api.ts -> crd.ts one', () => {
    const problems = circles(files, imports);
    assert.deepEqual(problems, [], `import circles:\n${problems.join('\n')}`);
  });

  it('sees the allowed circle, type-only, as it is', () => {
    const edge = imports.find(
      (i) => i.from === ALLOWED_TYPE_ONLY_EDGE.from && i.to === ALLOWED_TYPE_ONLY_EDGE.to,
    );
    assert.ok(edge?.typeOnly, 'src/echo/api.ts reads its types from crd.ts with `import type`');
  });

  it('finds what it looks for', () => {
    // The checks themselves, on made-up files: an upward import, a cross import, a circle.
    const made = [
      ...importsOf(
        'src/kube/a.ts',
        "import { x } from '../runtime/b.ts';\nexport * from '../http/c.ts';",
      ),
      ...importsOf('src/runtime/b.ts', "const m = await import('../kube/a.ts');"),
      ...importsOf('src/http/c.ts', "import type { T } from '../kube/a.ts';"),
    ];
    assert.deepEqual(
      made.map((i) => [i.to, i.typeOnly]),
      [
        ['src/runtime/b.ts', false],
        ['src/http/c.ts', false],
        ['src/kube/a.ts', false],
        ['src/kube/a.ts', true],
      ],
    );
    assert.match(upwardImports(made)[0] ?? '', /src\/kube\/a\.ts:1 imports '\.\.\/runtime\/b\.ts'/);
    assert.equal(crossImports(made).length, 2);
    const found = circles(['src/kube/a.ts', 'src/runtime/b.ts', 'src/http/c.ts'], made);
    assert.deepEqual(found.length, 2);
    assert.match(found[0] ?? '', /src\/kube\/a\.ts -> src\/runtime\/b\.ts -> src\/kube\/a\.ts/);
  });
});
