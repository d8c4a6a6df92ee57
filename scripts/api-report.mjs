#!/usr/bin/env node
/**
 * The public API of every publishable package, as its users see it: every name each entry point
 * (package.json "exports") declares in its built .d.ts, with its declaration (TSDoc stripped),
 * written to packages/<name>/api/<name>.api.md. The reports are committed and reviewed: a change
 * to a package's surface shows up as a diff of its report. The `repo` test project
 * (scripts/test/repo.test.mjs, part of `npm test`) fails when the built surface differs from the
 * committed report.
 *
 *   npm run api:update                 build, then rewrite every report
 *   node scripts/api-report.mjs        rewrite every report from the current dist (no build)
 *   node scripts/api-report.mjs --check [names...]   compare only; exit 1 on a difference
 *
 * An equivalent of API Extractor's report (`*.api.md`), made with the TypeScript compiler API over
 * the d.ts that tsup writes, so it follows whatever TypeScript version builds the packages. Types a
 * public declaration names but no entry point exports are listed too ("referenced, not exported"):
 * users get values of those types without being able to name them.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const UPDATE_COMMAND = 'npm run api:update';

let packagesCache;
/** Publishable workspace packages: `{ name, short, dir, json }`. */
export function publishablePackages() {
  if (packagesCache) return packagesCache;
  const out = [];
  for (const dir of readdirSync(join(root, 'packages')).sort()) {
    const file = join(root, 'packages', dir, 'package.json');
    if (!existsSync(file)) continue;
    const json = JSON.parse(readFileSync(file, 'utf8'));
    if (json.private === true) continue;
    out.push({ name: json.name, short: dir, dir: join(root, 'packages', dir), json });
  }
  packagesCache = out;
  return out;
}

/** The report's path for a package. */
export function reportPath(pkg) {
  return join(pkg.dir, 'api', `${pkg.short}.api.md`);
}

/** Entry points with types: `[subpath, absolute .d.ts]`, from the ESM side of the exports map. */
function entries(pkg) {
  const out = [];
  for (const [subpath, target] of Object.entries(pkg.json.exports ?? { '.': pkg.json.types })) {
    const types =
      typeof target === 'string'
        ? target.endsWith('.d.ts')
          ? target
          : undefined
        : (target.import?.types ?? target.types ?? target.default?.types);
    if (typeof types === 'string') out.push([subpath, join(pkg.dir, types)]);
    else if (typeof target === 'string' && /\.[cm]?js$/.test(target)) {
      // A JS file without types (a worker script): listed by path, it has no TypeScript surface.
      out.push([subpath, undefined]);
    }
  }
  return out;
}

const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });

/** The statement to print for a declaration (a variable's whole `declare const` statement). */
function statementOf(decl) {
  if (ts.isVariableDeclaration(decl)) return decl.parent.parent;
  return decl;
}

function print(node) {
  return printer.printNode(ts.EmitHint.Unspecified, node, node.getSourceFile()).trim();
}

/** Symbols a declaration names in its types (references, `typeof x`, heritage clauses). */
function referencedSymbols(checker, node, out) {
  const visit = (n) => {
    let id;
    if (ts.isTypeReferenceNode(n)) id = n.typeName;
    else if (ts.isExpressionWithTypeArguments(n)) id = n.expression;
    else if (ts.isTypeQueryNode(n)) id = n.exprName;
    else if (ts.isImportTypeNode(n)) id = undefined;
    if (id) {
      let sym = checker.getSymbolAtLocation(ts.isQualifiedName(id) ? id.left : id);
      if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
      if (sym) out.add(sym);
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
}

let programCache;
/** One program over every package's entry d.ts files (one type check of the whole surface). */
function sharedProgram() {
  programCache ??= ts.createProgram(
    publishablePackages().flatMap((p) => entries(p).flatMap(([, f]) => (f && existsSync(f) ? [f] : []))),
    {
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      types: ['node'],
    },
  );
  return programCache;
}

/**
 * The report for one package, as text. Throws when the package is not built.
 */
export function renderReport(pkg) {
  const list = entries(pkg);
  const files = list.map(([, f]) => f).filter(Boolean);
  for (const f of files) {
    if (!existsSync(f)) {
      throw new Error(`${pkg.name} is not built (${relative(root, f)} missing): run npm run build`);
    }
  }
  const program = sharedProgram();
  const checker = program.getTypeChecker();
  const distDir = `${join(pkg.dir, 'dist')}/`;
  const own = (decl) => decl.getSourceFile().fileName.startsWith(distDir);

  const exported = new Set(); // resolved symbols every entry exports
  const sections = [];
  for (const [subpath, file] of list) {
    const spec = subpath === '.' ? pkg.name : `${pkg.name}${subpath.slice(1)}`;
    if (!file) {
      sections.push({ spec, lines: ['(a script without types: loaded by path, not imported)'], count: 0 });
      continue;
    }
    const sf = program.getSourceFile(file);
    const moduleSymbol = sf && checker.getSymbolAtLocation(sf);
    const symbols = moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : [];
    const blocks = [];
    let values = 0;
    let types = 0;
    for (const sym of [...symbols].sort((a, b) => a.name.localeCompare(b.name, 'en'))) {
      const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
      exported.add(target);
      const decls = target.declarations ?? [];
      if (target.flags & ts.SymbolFlags.Value) values++;
      else types++;
      const from = decls.find((d) => !own(d));
      if (from && decls.every((d) => !own(d))) {
        // Re-exported from another package: that package's report has the declaration.
        const origin = /node_modules\/(@[^/]+\/[^/]+|[^/]+)\//.exec(from.getSourceFile().fileName)?.[1];
        const otherDir = publishablePackages().find((p) =>
          from.getSourceFile().fileName.startsWith(`${p.dir}/`),
        );
        blocks.push(
          `// re-exported from ${otherDir?.name ?? origin ?? relative(root, from.getSourceFile().fileName)}\nexport { ${target.name === sym.name ? sym.name : `${target.name} as ${sym.name}`} };`,
        );
        continue;
      }
      const seen = new Set();
      const texts = [];
      for (const d of decls) {
        const stmt = statementOf(d);
        if (seen.has(stmt)) continue;
        seen.add(stmt);
        texts.push(print(stmt));
      }
      const alias = target.name !== sym.name ? `// exported as ${sym.name}\n` : '';
      blocks.push(alias + texts.join('\n'));
    }
    sections.push({ spec, blocks, values, types });
  }

  // Types public declarations name that no entry point exports (API Extractor's ae-forgotten-export).
  const forgotten = new Map();
  const queue = [];
  for (const sym of exported) queue.push(sym);
  while (queue.length > 0) {
    const sym = queue.pop();
    const refs = new Set();
    for (const d of sym.declarations ?? []) if (own(d)) referencedSymbols(checker, statementOf(d), refs);
    for (const ref of refs) {
      if (exported.has(ref) || forgotten.has(ref)) continue;
      const decls = (ref.declarations ?? []).filter(own);
      // Type parameters and locals inside a declaration are not module-level names.
      if (decls.length === 0 || decls.some((d) => !ts.isSourceFile(statementOf(d).parent))) continue;
      forgotten.set(ref, decls);
      queue.push(ref);
    }
  }

  const out = [
    `# API report: ${pkg.name}`,
    '',
    `<!-- Written by scripts/api-report.mjs from the built .d.ts; do not edit. After changing what this package exports: ${UPDATE_COMMAND} -->`,
    '',
  ];
  for (const s of sections) {
    out.push(`## ${s.spec}`, '');
    if (s.lines) {
      out.push(...s.lines, '');
      continue;
    }
    out.push(`${s.values + s.types} names: ${s.values} values, ${s.types} types only.`, '');
    out.push('```ts', s.blocks.join('\n\n'), '```', '');
  }
  if (forgotten.size > 0) {
    const blocks = [...forgotten.entries()]
      .sort(([a], [b]) => a.name.localeCompare(b.name, 'en'))
      .map(([, decls]) => [...new Set(decls.map(statementOf))].map(print).join('\n'));
    out.push(
      '## Referenced, not exported',
      '',
      `${forgotten.size} types that exported declarations name but no entry point exports.`,
      '',
      '```ts',
      blocks.join('\n\n'),
      '```',
      '',
    );
  }
  return out.join('\n');
}

/** Compares the built surface with the committed report: a problem string, or undefined. */
export function checkReport(pkg) {
  const file = reportPath(pkg);
  const built = renderReport(pkg);
  if (!existsSync(file)) {
    return `${pkg.name} has no API report (${relative(root, file)}): run ${UPDATE_COMMAND} and commit it`;
  }
  const committed = readFileSync(file, 'utf8');
  if (committed === built) return undefined;
  const a = committed.split('\n');
  const b = built.split('\n');
  const removed = a.filter((l) => !b.includes(l)).slice(0, 8);
  const added = b.filter((l) => !a.includes(l)).slice(0, 8);
  return [
    `${pkg.name}: the built public API differs from ${relative(root, file)}.`,
    `If the change is on purpose, run ${UPDATE_COMMAND} and commit the report with it (a removed or changed export is a breaking change: add a changeset).`,
    ...removed.map((l) => `  - ${l}`),
    ...added.map((l) => `  + ${l}`),
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const pkgs = publishablePackages().filter(
    (p) => only.length === 0 || only.some((o) => o === p.name || o === p.short),
  );
  let failed = 0;
  for (const pkg of pkgs) {
    if (check) {
      const problem = checkReport(pkg);
      if (problem) {
        failed++;
        console.error(problem);
      }
      continue;
    }
    const file = reportPath(pkg);
    const text = renderReport(pkg);
    const before = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    if (before !== text) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
      console.log(`api-report: wrote ${relative(root, file)}`);
    }
  }
  if (check) {
    console.log(
      failed === 0 ? `api-report: ${pkgs.length} reports match` : `api-report: ${failed} report(s) differ`,
    );
  }
  process.exit(failed === 0 ? 0 : 1);
}
