#!/usr/bin/env node
/**
 * Checks what every publishable package (packages/* without "private": true) would publish.
 *
 *   npm run check:packages            all publishable packages (build them first: npm run build)
 *   node scripts/check-packages.mjs http cli    only these
 *   node scripts/check-packages.mjs --no-load   without loading the packed entries
 *
 * Per package, on the tarball `npm pack` makes (one `npm pack` for all of them):
 * - declared imports: every bare import in src (tests excluded) and in the published dist (.js, .cjs,
 *   .d.ts, .d.cts) is a dependency or peerDependency; imports are read with TypeScript's scanner
 *   (`ts.preProcessFile`), so TSDoc examples and strings are not mistaken for imports.
 * - runtimes the user chooses (onnxruntime-*, @tensorflow/*, express, fastify, ioredis, piscina,
 *   prom-client, @grpc/*, @opentelemetry/api) are peerDependencies, never dependencies; every
 *   peerDependenciesMeta entry names a declared peer; a non-optional peer of an internal dependency
 *   is declared again (Yarn refuses to pass peers through silently, and npm users see one version).
 * - internal @mlserve/* dependencies use `^<current version>` (peers: any range holding it) and are
 *   publishable; engines.node and license match the root.
 * - the tarball holds dist, README.md, CHANGELOG.md, LICENSE and package.json, plus only the
 *   run-time assets listed in ASSETS below; no sources, tests or configs; README.md is there; a bin
 *   starts with a node shebang; no CJS file reads esbuild's empty `import.meta` stand-in.
 * - a pending changeset names the package, and every changeset file parses.
 * - publint (strict, suggestions included) on the tarball.
 * - attw (@arethetypeswrong/core) on the tarball with the "node16" profile: node10 resolution
 *   (TypeScript's `moduleResolution: node`, deprecated in TypeScript 6.0) ignores `exports`, so it
 *   can never see subpath entries such as `@mlserve/backend-onnx/web`; every other resolution
 *   (node16 from ESM and from CJS, bundler) must be clean.
 * - every JS entry of every package, extracted from its tarball into a strict layout (each package
 *   sees only what it declares, as under pnpm), loads with import() and with require().
 * - (warning only) the changesets release plan pushes no package to a major nobody asked for.
 *
 * Exits 1 on any problem, printing each, then one summary line.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { packWorkspaces } from './pack.mjs';

const started = performance.now();
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));

/** Runtimes the user chooses: peers only, so the application holds one copy of each. */
const RUNTIMES = [
  /^onnxruntime-/,
  /^@tensorflow\//,
  /^express$/,
  /^fastify$/,
  /^ioredis$/,
  /^piscina$/,
  /^prom-client$/,
  /^@grpc\//,
  /^@opentelemetry\/api$/,
];

/** Files outside dist that a package reads at run time, with the reason they ship. */
const ASSETS = {
  '@mlserve/cli': {
    'bin/': 'the mlserve bin: a committed file npm can link before the first build (it imports dist/cli.js)',
  },
  '@mlserve/backend-tfjs': { 'models/': 'the trained MNIST model the README loads from node_modules' },
  '@mlserve/protocol': {
    'proto/':
      'the KServe V2 gRPC proto that @mlserve/grpc and @mlserve/client load at run time (and exports)',
  },
};

/** attw problems accepted on purpose: `${package} ${entrypoint} ${kind}` -> why. */
const ATTW_ACCEPTED = {
  '@mlserve/workers ./worker CJSResolvesToESM':
    'the worker script is a file for Piscina to load (resolve it, never require it); both builds of the pool use this ESM file',
};

const ALWAYS_SHIPPED = /^(package\.json|README\.md|CHANGELOG\.md|LICEN[CS]E(\.\w+)?)$/i;
const NOT_PUBLISHED = [
  /(^|\/)(src|test|tests|__tests__|scripts|fixtures)\//,
  /\.(test|spec)\.[cm]?[jt]sx?$/,
  /(^|\/)(tsconfig[^/]*\.json|tsup\.config\.\w+|vitest\.config\.\w+)$/,
  /\.tsbuildinfo$/,
];
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, m.split('/')[0]]));

const problems = [];
let loaded = 0;
const notes = [];
function problem(pkg, message) {
  problems.push(`${pkg}: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// The workspace
const workspace = new Map();
for (const dir of readdirSync(join(root, 'packages'))) {
  const file = join(root, 'packages', dir, 'package.json');
  if (!existsSync(file)) continue;
  const json = JSON.parse(readFileSync(file, 'utf8'));
  workspace.set(json.name, { dir: join(root, 'packages', dir), json });
}
const publishable = [...workspace.values()].filter(
  (p) =>
    p.json.private !== true &&
    (only.length === 0 || only.some((o) => p.json.name === o || p.json.name === `@mlserve/${o}`)),
);
if (publishable.length === 0) {
  console.error(`check-packages: no publishable package matches ${only.join(', ')}`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// Imports
function packageName(specifier) {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:'))
    return undefined;
  if (/^[a-z]+:/i.test(specifier)) return undefined; // data:, file:, https:
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  return BUILTINS.has(name) ? undefined : name;
}

/** Bare package names imported by a file: static, type-only, `import()`, `require()`, `export from`. */
function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const info = ts.preProcessFile(text, true, true);
  const names = new Set();
  for (const ref of info.importedFiles) {
    const name = packageName(ref.fileName);
    if (name) names.add(name);
  }
  for (const ref of info.typeReferenceDirectives) {
    // `/// <reference types="node" />` needs @types/node, which every TypeScript user of Node has.
    if (ref.fileName !== 'node') names.add(ref.fileName);
  }
  return names;
}

function sourceFiles(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) {
      if (!/^(__tests__|test|tests|fixtures)$/.test(entry)) out.push(...sourceFiles(path));
    } else if (/\.[cm]?tsx?$/.test(entry) && !/\.(test|spec)\.[cm]?tsx?$/.test(entry)) {
      out.push(path);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Changesets
const changesetDir = join(root, '.changeset');
const pending = new Map(); // package -> changeset files
for (const entry of existsSync(changesetDir) ? readdirSync(changesetDir) : []) {
  if (!entry.endsWith('.md') || entry === 'README.md') continue;
  const text = readFileSync(join(changesetDir, entry), 'utf8');
  const match = /^---\r?\n([\s\S]*?)\r?\n---\r?\n/.exec(text);
  const lines = match?.[1]?.split(/\r?\n/).filter((l) => l.trim() !== '') ?? [];
  const releases = lines.map((l) => /^\s*["']?(@?[\w./-]+)["']?\s*:\s*(major|minor|patch)\s*$/.exec(l));
  if (!match || lines.length === 0 || releases.some((r) => !r)) {
    problem(
      `.changeset/${entry}`,
      'not a valid changeset (it must open with ---, one `"@mlserve/x": patch|minor|major` per line, then ---); `changeset version` stops on it',
    );
    continue;
  }
  for (const r of releases) {
    const name = r[1];
    if (!workspace.has(name))
      problem(`.changeset/${entry}`, `names ${name}, which is not a workspace package`);
    pending.set(name, [...(pending.get(name) ?? []), entry]);
  }
}

// ---------------------------------------------------------------------------------------------
// Pack every package once
for (const p of publishable) {
  const missing = [p.json.main, p.json.module, p.json.types].filter((f) => f && !existsSync(join(p.dir, f)));
  if (missing.length > 0) {
    console.error(
      `check-packages: ${p.json.name} is not built (${missing.join(', ')} missing); run: npm run build`,
    );
    process.exit(1);
  }
}
const packDir = mkdtempSync(join(tmpdir(), 'mlserve-pack-'));
process.on('exit', () => rmSync(packDir, { recursive: true, force: true }));
let packed;
try {
  packed = new Map(
    packWorkspaces(
      root,
      publishable.map((p) => p.dir),
      packDir,
    ).map((t) => [t.name, t]),
  );
} catch (err) {
  rmSync(packDir, { recursive: true, force: true });
  console.error(`check-packages: npm pack failed: ${err.stderr ?? err.message}`);
  process.exit(1);
}

// Extracted once: every later check reads the tarball's files, not a dist another build may be rewriting.
const store = join(packDir, 'store');
const dirOf = (pkgName) => join(store, pkgName.replace('/', '+'), 'package');
for (const p of publishable) {
  const tarball = packed.get(p.json.name);
  if (!tarball) continue;
  mkdirSync(dirname(dirOf(p.json.name)), { recursive: true });
  execFileSync('tar', ['xzf', join(packDir, tarball.filename), '-C', dirname(dirOf(p.json.name))]);
}

const { publint } = await import('publint');
const semver = await import('semver').then((m) => m.default ?? m).catch(() => undefined);
const { formatMessage } = await import('publint/utils');
const attw = await import('@arethetypeswrong/core');

for (const p of publishable) {
  const { json, dir } = p;
  const name = json.name;
  const tarball = packed.get(name);
  if (!tarball) {
    problem(name, 'npm pack made no tarball');
    continue;
  }
  const files = tarball.files.map((f) => f.path);
  const deps = json.dependencies ?? {};
  const peers = json.peerDependencies ?? {};
  const meta = json.peerDependenciesMeta ?? {};

  // The fields every package shares with the workspace root
  const rootJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  if (json.engines?.node !== rootJson.engines?.node) {
    problem(
      name,
      `engines.node is ${json.engines?.node ?? 'missing'}; the workspace floor is ${rootJson.engines?.node}`,
    );
  }
  if (json.license !== rootJson.license)
    problem(name, `license is ${json.license ?? 'missing'}, not ${rootJson.license}`);

  // Declared imports
  const importedBy = new Map();
  const scanned = [
    ...sourceFiles(join(dir, 'src')),
    ...files.filter((f) => /\.(c|m)?js$|\.d\.(c|m)?ts$/.test(f)).map((f) => join(dirOf(name), f)),
  ];
  for (const file of scanned) {
    for (const dep of importsOf(file)) {
      if (dep === name) continue;
      if (!importedBy.has(dep))
        importedBy.set(dep, relative(file.startsWith(store) ? dirOf(name) : dir, file));
    }
  }
  for (const [dep, file] of importedBy) {
    if (!(dep in deps) && !(dep in peers)) {
      problem(name, `imports ${dep} (${file}) but declares it in neither dependencies nor peerDependencies`);
    }
  }

  // Runtimes are peers; peerDependenciesMeta names peers
  for (const dep of Object.keys(deps)) {
    if (RUNTIMES.some((r) => r.test(dep))) {
      problem(name, `${dep} is a runtime the user chooses: a peerDependency, not a dependency`);
    }
    if (dep in peers) problem(name, `${dep} is both a dependency and a peerDependency`);
  }
  for (const dep of Object.keys(meta)) {
    if (!(dep in peers)) problem(name, `peerDependenciesMeta names ${dep}, which is not a peerDependency`);
  }

  // Internal packages: ^current version, publishable; their required peers passed on
  for (const [dep, range] of [...Object.entries(deps), ...Object.entries(peers)]) {
    const isPeer = !(dep in deps);
    const target = workspace.get(dep);
    if (!dep.startsWith('@mlserve/')) continue;
    if (!target) {
      problem(name, `depends on ${dep}, which is not in the workspace`);
      continue;
    }
    if (target.json.private === true)
      problem(name, `depends on ${dep}, which is private and never published`);
    // An internal peer may be wider than ^x.y.z (e.g. ">=0.1.0 <1.0.0", so that changesets does not
    // push its dependents to a major on every minor) as long as it holds the current version.
    const widePeer = isPeer && semver?.satisfies(target.json.version, range);
    if (range !== `^${target.json.version}` && !widePeer) {
      problem(
        name,
        `${dep} is "${range}"; the workspace has ${target.json.version}: use "^${target.json.version}"`,
      );
    }
  }
  for (const dep of Object.keys(deps)) {
    const target = workspace.get(dep)?.json;
    if (!target) continue;
    for (const peer of Object.keys(target.peerDependencies ?? {})) {
      if (target.peerDependenciesMeta?.[peer]?.optional) continue;
      if (peer === name || peer in deps || peer in peers) continue;
      problem(
        name,
        `depends on ${dep}, whose required peer ${peer} it neither declares as a peer nor depends on`,
      );
    }
  }

  // What the tarball holds
  const assets = ASSETS[name] ?? {};
  for (const file of files) {
    if (NOT_PUBLISHED.some((r) => r.test(file)) && !Object.keys(assets).some((a) => file.startsWith(a))) {
      problem(name, `publishes ${file} (sources, tests and configs stay out of the tarball)`);
    } else if (!file.startsWith('dist/') && !ALWAYS_SHIPPED.test(file)) {
      if (!Object.keys(assets).some((a) => file.startsWith(a))) {
        problem(
          name,
          `publishes ${file}, which is neither dist nor a run-time asset listed in scripts/check-packages.mjs`,
        );
      }
    }
  }
  for (const asset of Object.keys(assets)) {
    if (!files.some((f) => f.startsWith(asset))) problem(name, `ships no ${asset} (${assets[asset]})`);
  }
  if (!files.includes('README.md')) problem(name, 'has no README.md');
  const bins = typeof json.bin === 'string' ? { [name]: json.bin } : (json.bin ?? {});
  for (const [bin, target] of Object.entries(bins)) {
    const path = target.replace(/^\.\//, '');
    if (!files.includes(path)) problem(name, `bin ${bin} points at ${target}, which is not published`);
    else if (!readFileSync(join(dirOf(name), path), 'utf8').startsWith('#!/usr/bin/env node')) {
      problem(name, `bin ${bin} (${target}) does not start with #!/usr/bin/env node`);
    }
  }

  // A CJS build that reads import.meta gets esbuild's empty stand-in (tsup `shims: true` fixes it)
  for (const file of files.filter((f) => f.endsWith('.cjs'))) {
    if (/\bimport_meta\.url\b/.test(readFileSync(join(dirOf(name), file), 'utf8'))) {
      problem(
        name,
        `${file} reads import.meta.url, which is undefined in CommonJS: set shims: true in tsup.config.ts`,
      );
    }
  }

  // Changeset
  if (!pending.has(name)) problem(name, 'has no pending changeset (add .changeset/<name>-*.md)');

  // publint on the tarball, suggestions included
  const data = readFileSync(join(packDir, tarball.filename));
  const tarData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const lint = await publint({ pack: { tarball: tarData }, level: 'suggestion', strict: true });
  for (const message of lint.messages) {
    problem(name, `publint ${message.type}: ${formatMessage(message, lint.pkg, { color: false })}`);
  }

  // attw on the tarball, node16 profile; data-file exports (package.json, .proto) are not modules
  const dataEntries = Object.entries(json.exports ?? {})
    .filter(([, target]) => typeof target === 'string' && !/\.[cm]?js$/.test(target))
    .map(([subpath]) => subpath);
  const result = await attw.checkPackage(attw.createPackageFromTarballData(new Uint8Array(data)), {
    excludeEntrypoints: dataEntries,
  });
  if (result.types === false) {
    problem(name, 'attw: the package ships no types');
  } else {
    for (const found of result.problems) {
      if ('resolutionKind' in found && found.resolutionKind === 'node10') continue;
      const entry = 'entrypoint' in found ? found.entrypoint : '';
      const key = `${name} ${entry} ${found.kind}`;
      if (key in ATTW_ACCEPTED) {
        notes.push(`${key}: accepted (${ATTW_ACCEPTED[key]})`);
        continue;
      }
      const where = 'resolutionKind' in found ? ` (${found.resolutionKind})` : '';
      problem(name, `attw ${found.kind} at ${entry || '.'}${where}`);
    }
  }
}
// Load what was packed, in a strict layout (as pnpm installs it): each package extracted on its
// own, seeing only what it declares (its internal dependencies as their own extracted tarballs,
// everything else linked from the workspace), then every JS entry imported and required.
if (!process.argv.includes('--no-load')) {
  const link = (from, pkgName, target) => {
    const at = join(from, 'node_modules', pkgName);
    mkdirSync(dirname(at), { recursive: true });
    if (!existsSync(at)) symlinkSync(target, at, 'dir');
  };
  const consumer = join(packDir, 'consumer');
  mkdirSync(consumer, { recursive: true });
  const checks = [];
  for (const p of publishable) {
    const at = dirOf(p.json.name);
    if (!existsSync(at)) continue;
    const declared = { ...p.json.peerDependencies, ...p.json.dependencies };
    let linked = true;
    for (const dep of Object.keys(declared)) {
      if (dep.startsWith('@mlserve/') && existsSync(dirOf(dep))) link(at, dep, dirOf(dep));
      else if (existsSync(join(root, 'node_modules', dep))) link(at, dep, join(root, 'node_modules', dep));
      else if (!p.json.peerDependenciesMeta?.[dep]?.optional) {
        notes.push(`${p.json.name}: ${dep} is not installed in the workspace; its entries are not loaded`);
        linked = false;
      }
    }
    link(consumer, p.json.name, at);
    if (!linked) continue;
    const sideEffects = Array.isArray(p.json.sideEffects) ? p.json.sideEffects : [];
    for (const [subpath, target] of Object.entries(p.json.exports ?? {})) {
      const targets =
        typeof target === 'string' ? [target] : [target.import?.default, target.require?.default];
      if (!targets.some((t) => t && /\.[cm]?js$/.test(t))) continue;
      // Worker scripts run only inside their worker; importing them on the main thread is not a use.
      if (targets.some((t) => sideEffects.includes(t))) continue;
      checks.push([p.json.name, subpath === '.' ? p.json.name : `${p.json.name}${subpath.slice(1)}`]);
    }
  }
  // An ES module in the consumer: import() takes the "import" conditions, require() the "require" ones.
  writeFileSync(
    join(consumer, 'probe.mjs'),
    `import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const out = [];
for (const [pkg, spec] of ${JSON.stringify(checks)}) {
  for (const how of ['import', 'require']) {
    try {
      const mod = how === 'import' ? await import(spec) : require(spec);
      if (Object.keys(mod).length === 0) out.push(pkg + ': ' + how + ' ' + spec + ' exports nothing');
    } catch (err) {
      out.push(pkg + ': ' + how + ' ' + spec + ' fails: ' + String(err?.message).split('\\n')[0]);
    }
  }
}
process.stdout.write(JSON.stringify(out));
process.exit(0);
`,
  );
  try {
    const out = execFileSync(process.execPath, [join(consumer, 'probe.mjs')], {
      cwd: consumer,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    for (const line of JSON.parse(out)) problems.push(line);
    loaded = checks.length;
  } catch (err) {
    problems.push(`loading the packed entries failed: ${String(err.stderr || err.message).split('\n')[0]}`);
  }
}

rmSync(packDir, { recursive: true, force: true });

// The release plan changesets would apply: a package pushed to a major that no changeset asked for
// (changesets bumps a peer dependent to major when the peer gets a minor) is reported, not failed.
const warnings = [];

if (only.length === 0) {
  try {
    const { default: getReleasePlan } = await import('@changesets/get-release-plan');
    const plan = await getReleasePlan(root);
    const asked = new Map();
    for (const c of plan.changesets)
      for (const r of c.releases) asked.set(r.name, [...(asked.get(r.name) ?? []), r.type]);
    for (const release of plan.releases) {
      if (release.type === 'major' && !(asked.get(release.name) ?? []).includes('major')) {
        warnings.push(
          `${release.name}: \`changeset version\` would make it ${release.newVersion} (major) because an internal peerDependency gets a minor bump`,
        );
      }
    }
  } catch (err) {
    warnings.push(`release plan: ${err.message.split('\n')[0]}`);
  }
}

for (const line of warnings) console.log(`warn  ${line}`);
for (const line of [...new Set(notes)]) console.log(`note  ${line}`);
for (const line of problems) console.log(`FAIL  ${line}`);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  problems.length === 0
    ? `check-packages: ${publishable.length} packages OK (imports declared, peers, tarball contents, changesets, publint, attw node16, ${process.argv.includes('--no-load') ? 'loading skipped' : `${loaded} entries loaded as ESM and CJS`}) in ${seconds} s`
    : `check-packages: ${problems.length} problem(s) in ${new Set(problems.map((p) => p.split(':')[0])).size} of ${publishable.length} packages (${seconds} s)`,
);
process.exit(problems.length === 0 ? 0 : 1);
