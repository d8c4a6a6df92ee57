import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';
import { checkReport, publishablePackages, root } from '../api-report.mjs';
import { committedGraph, layers, packageGraph, renderGraph } from '../architecture.mjs';

/** Every workspace package: `{ name, dir, json }`. */
function workspacePackages() {
  return readdirSync(join(root, 'packages'))
    .filter((d) => existsSync(join(root, 'packages', d, 'package.json')))
    .map((d) => {
      const json = JSON.parse(readFileSync(join(root, 'packages', d, 'package.json'), 'utf8'));
      return { name: json.name, dir: join(root, 'packages', d), json };
    });
}

function codeFiles(dir, out = []) {
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) codeFiles(path, out);
    else if (/\.[cm]?[jt]sx?$/.test(entry) && !/\.d\.[cm]?ts$/.test(entry)) out.push(path);
  }
  return out;
}

describe('public API reports (packages/<name>/api/<name>.api.md)', () => {
  test.each(publishablePackages().map((p) => [p.name, p]))(
    '%s: the built surface matches the report',
    (_, pkg) => {
      const problem = checkReport(pkg);
      if (problem) throw new Error(problem);
    },
  );
});

describe('workspace imports', () => {
  // turbo's ^build orders a package after the packages it declares; an undeclared @mlserve import
  // typechecks or runs against a dist that may not be built yet (or is stale).
  test.each(workspacePackages().map((p) => [p.name, p]))(
    '%s declares every @mlserve package it imports',
    (_, pkg) => {
      const declared = new Set(
        Object.keys({ ...pkg.json.dependencies, ...pkg.json.devDependencies, ...pkg.json.peerDependencies }),
      );
      const missing = [];
      for (const file of codeFiles(pkg.dir)) {
        const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
        for (const ref of info.importedFiles) {
          const name = /^@mlserve\/[a-z0-9-]+/.exec(ref.fileName)?.[0];
          if (name && name !== pkg.name && !declared.has(name))
            missing.push(`${name} (${relative(root, file)})`);
        }
      }
      expect(
        missing,
        `add these to ${relative(root, pkg.dir)}/package.json (devDependencies "*" for tests)`,
      ).toEqual([]);
    },
  );
});

describe('docs/architecture.md', () => {
  test('the package graph is a DAG with @mlserve/core alone at the bottom', () => {
    const graph = packageGraph();
    const layer = layers(graph); // throws on a cycle
    const bottom = [...layer].filter(([, l]) => l === 0).map(([n]) => n);
    expect(bottom).toEqual(['core']);
    expect(graph.get('core').deps.size).toBe(0);
  });

  test('its diagram is the one package.json files give (node scripts/architecture.mjs rewrites it)', () => {
    expect(committedGraph(), 'run: node scripts/architecture.mjs').toBe(renderGraph());
  });

  test('every file it names exists', () => {
    const page = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');
    const named = [...new Set(page.match(/packages\/[a-z0-9-]+\/src\/[\w/.-]+\.ts/g) ?? [])];
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((f) => !existsSync(join(root, f)))).toEqual([]);
  });
});
