import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isServeError, type Middleware, type ServeError, wrap } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import {
  defaultServing,
  loadRepository,
  Repository,
  type RepositoryOptions,
  type VersionEvent,
} from '../src/index.js';
import { importOptional } from '../src/loaders.js';
import { addVersion, argmax, delay, digit, sleep, tempRepo, writeConfig } from './helpers.js';
import { type LoaderLog, onnxLoader } from './loader.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const t = await tempRepo();
  cleanups.push(t.cleanup);
  return t.dir;
}

async function open(
  dir: string,
  options: RepositoryOptions = {},
  log: LoaderLog = { loads: [], disposed: [] },
) {
  const repo = await loadRepository(dir, { loaders: { onnx: onnxLoader(log) }, warmup: false, ...options });
  cleanups.push(() => repo.close());
  return repo;
}

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<ServeError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (isServeError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('loading', () => {
  it('serves the MNIST CNN from a repository with no config: right answers, name and version', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir);
    expect(repo.registry.list().map((s) => [s.name, s.version, s.state])).toEqual([['mnist', '1', 'ready']]);
    const { count, labels } = mnistHoldout();
    let correct = 0;
    for (let i = 0; i < 50; i++) {
      const out = await repo.registry.infer('mnist', undefined, digit(i));
      if (argmax(out.logits!.data as Float32Array) === labels[i]) correct++;
    }
    expect(count).toBe(200);
    expect(correct).toBeGreaterThanOrEqual(45);
    const meta = repo.registry.get('mnist').metadata();
    expect(meta).toMatchObject({ name: 'mnist', version: '1', platform: 'onnxruntime_onnx' });
    expect(repo.versions()).toMatchObject([
      { name: 'mnist', version: '1', state: 'ready', file: 'mnist/1/model.onnx' },
    ]);
  });

  it('validates requests by default (the core validation layer is in the pipeline)', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir);
    const err = await rejection(
      repo.registry.infer('mnist', undefined, {
        image: { type: 'float32', dims: [1, 28, 28], data: new Float32Array(784) },
      }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('input "image"');
  });

  it('exposes labels.txt as metadata().extra.labels', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await writeFile(
      join(dir, 'mnist', 'labels.txt'),
      'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n',
    );
    const repo = await open(dir);
    expect(repo.registry.get('mnist').metadata().extra?.labels).toEqual([
      'zero',
      'one',
      'two',
      'three',
      'four',
      'five',
      'six',
      'seven',
      'eight',
      'nine',
    ]);
  });

  it('loads several models side by side and ignores stray files and dot-directories', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await addVersion(dir, 'mlp', '3', 'mlp.onnx');
    await mkdir(join(dir, '.hidden', '1'), { recursive: true });
    await writeFile(join(dir, 'README.md'), 'not a model');
    await mkdir(join(dir, 'mnist', 'notaversion'), { recursive: true });
    const repo = await open(dir);
    expect(repo.registry.names()).toEqual(['mlp', 'mnist']);
    const out = await repo.registry.infer('mlp', '3', {
      features: { type: 'float32', dims: [2, 16], data: new Float32Array(32) },
    });
    expect(out.scores!.dims).toEqual([2, 2]);
  });

  it('fails a model whose backend package is missing with UNAVAILABLE naming the package', async () => {
    const err = await rejection(importOptional('@mlserve/not-a-real-package'));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('@mlserve/not-a-real-package');
  });

  it('builds validation -> cache -> batching -> model from config, passing each its options', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await writeConfig(dir, 'mnist', { batching: { maxBatchSize: 8, maxDelayMs: 2 }, cache: { max: 100 } });
    const order: string[] = [];
    const seen: Record<string, unknown> = {};
    const layer =
      (name: string): ((o: Record<string, unknown>) => Middleware) =>
      (options) => {
        seen[name] = options;
        return (inner) =>
          wrap(inner, {
            layer: name,
            infer: (inputs, opts) => {
              order.push(name);
              return inner.infer(inputs, opts);
            },
          });
      };
    const repo = await open(dir, {
      loaders: { onnx: onnxLoader(), batching: layer('batching'), cache: layer('cache') },
      middleware: () => [layer('metrics')({})],
    });
    await repo.registry.infer('mnist', undefined, digit(0));
    expect(order).toEqual(['metrics', 'cache', 'batching']);
    expect(seen.batching).toEqual({ maxBatchSize: 8, maxDelayMs: 2 });
    expect(seen.cache).toEqual({ max: 100 });
  });
});

describe('version policy', () => {
  async function versions(policy: unknown): Promise<string[]> {
    const dir = await setup();
    for (const v of ['1', '2', '3', '10']) await addVersion(dir, 'mlp', v, 'mlp.onnx');
    if (policy !== undefined) await writeConfig(dir, 'mlp', { versionPolicy: policy });
    const repo = await open(dir);
    return repo.registry.versions('mlp');
  }

  it('serves the latest version by default (numeric order: 10 after 3)', async () => {
    expect(await versions(undefined)).toEqual(['10']);
  });
  it('serves the latest N', async () => {
    expect(await versions({ latest: 2 })).toEqual(['3', '10']);
    expect(await versions({ latest: { numVersions: 3 } })).toEqual(['2', '3', '10']);
  });
  it('serves all versions', async () => {
    expect(await versions('all')).toEqual(['1', '2', '3', '10']);
  });
  it('serves a specific list (missing ones are skipped)', async () => {
    expect(await versions({ specific: [1, '3', 7] })).toEqual(['1', '3']);
  });
});

describe('labels and traffic', () => {
  it('points labels at versions; requests name them', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    await addVersion(dir, 'mlp', '2', 'mlp.onnx');
    await writeConfig(dir, 'mlp', { versionPolicy: 'all', labels: { stable: '1', canary: 2 } });
    const repo = await open(dir);
    expect(repo.registry.get('mlp', 'stable').version).toBe('1');
    expect(repo.registry.get('mlp', 'canary').version).toBe('2');
    expect(repo.registry.status('mlp', '1')?.labels).toEqual(['stable']);
    // Relabel live: the config changes, the next poll moves the label.
    await writeConfig(dir, 'mlp', { versionPolicy: 'all', labels: { stable: '2' } });
    await repo.poll();
    expect(repo.registry.get('mlp', 'stable').version).toBe('2');
    expect((await rejection(() => repo.registry.get('mlp', 'canary'))).code).toBe('NOT_FOUND');
  });

  it('splits traffic by weight, sticky per request id', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    await addVersion(dir, 'mlp', '2', 'mlp.onnx');
    await writeConfig(dir, 'mlp', { versionPolicy: 'all', traffic: { '1': 80, '2': 20 } });
    const repo = await open(dir);
    const counts: Record<string, number> = { '1': 0, '2': 0 };
    for (let i = 0; i < 1000; i++) {
      const v = repo.registry.get('mlp', undefined, { id: `user-${i}` }).version;
      counts[v]!++;
      // The same id always lands on the same version.
      expect(repo.registry.get('mlp', undefined, { id: `user-${i}` }).version).toBe(v);
    }
    expect(counts['2']).toBeGreaterThan(120);
    expect(counts['2']).toBeLessThan(280);
  });
});

describe('hot reload', () => {
  it('adds a version while requests run: no request fails, the new one serves, the old retires', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const log: LoaderLog = { loads: [], disposed: [] };
    const repo = await open(dir, { middleware: () => [delay(5)] }, log);
    const events: VersionEvent[] = [];
    repo.on('version', (e) => events.push(e));
    let stop = false;
    const versionsSeen = new Set<string>();
    const failures: unknown[] = [];
    let done = 0;
    const client = async () => {
      while (!stop) {
        try {
          const m = repo.registry.get('mnist');
          versionsSeen.add(m.version);
          await m.infer(digit(done % 200));
          done++;
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const clients = Promise.all([client(), client(), client(), client()]);
    await sleep(50);
    await addVersion(dir, 'mnist', '2');
    const first = await repo.poll();
    expect(first.loaded).toEqual([]); // files seen once: not yet known to be complete
    const second = await repo.poll();
    expect(second.loaded).toEqual(['mnist/2']);
    expect(second.retired).toEqual(['mnist/1']);
    await sleep(50);
    stop = true;
    await clients;
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThan(10);
    expect(versionsSeen).toEqual(new Set(['1', '2']));
    expect(repo.registry.versions('mnist')).toEqual(['2']);
    expect(log.disposed).toEqual(['mnist/1']);
    expect(events.map((e) => `${e.phase} ${e.version}`)).toEqual([
      'waiting 2',
      'loading 2',
      'ready 2',
      'retired 1',
    ]);
  });

  it('waits for a copy in progress to settle before loading it', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir);
    const full = await readFile(join(dir, 'mnist', '1', 'model.onnx'));
    await mkdir(join(dir, 'mnist', '2'));
    await writeFile(join(dir, 'mnist', '2', 'model.onnx'), full.subarray(0, 1000));
    expect((await repo.poll()).loaded).toEqual([]);
    await writeFile(join(dir, 'mnist', '2', 'model.onnx'), full.subarray(0, 200_000)); // still copying
    const mid = await repo.poll();
    expect(mid.loaded).toEqual([]);
    expect(mid.failed).toEqual([]);
    await writeFile(join(dir, 'mnist', '2', 'model.onnx'), full);
    expect((await repo.poll()).loaded).toEqual([]);
    const settled = await repo.poll();
    expect(settled.loaded).toEqual(['mnist/2']);
    expect(settled.failed).toEqual([]);
  });

  it('keeps the old version serving when the new one is corrupt, and loads it once fixed', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir);
    await mkdir(join(dir, 'mnist', '2'));
    await writeFile(join(dir, 'mnist', '2', 'model.onnx'), Buffer.from('this is not an onnx model'));
    await repo.poll();
    const report = await repo.poll();
    expect(report.failed).toEqual(['mnist/2']);
    expect(report.retired).toEqual([]);
    expect(repo.registry.status('mnist', '2')).toMatchObject({ state: 'failed', ready: false });
    expect(repo.registry.status('mnist', '2')?.error).toBeTruthy();
    expect(repo.stats().loadFailures).toBe(1);
    const out = await repo.registry.infer('mnist', undefined, digit(0));
    expect(out.logits!.dims).toEqual([1, 10]);
    expect(repo.registry.get('mnist').version).toBe('1');
    // The same broken files are not retried at every poll.
    expect((await repo.poll()).failed).toEqual([]);
    // Fixed: loads, and only then is version 1 retired.
    await addVersion(dir, 'mnist', '2');
    await repo.poll();
    const fixed = await repo.poll();
    expect(fixed.loaded).toEqual(['mnist/2']);
    expect(fixed.retired).toEqual(['mnist/1']);
    expect(repo.registry.get('mnist').version).toBe('2');
  });

  it('keeps serving when config.json turns invalid, and names the file and field', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir);
    const errors: string[] = [];
    repo.on('configError', (_name, e) => errors.push(e.message));
    await writeConfig(dir, 'mnist', { batching: { maxBatchSize: -4 } });
    await addVersion(dir, 'mnist', '2');
    await repo.poll();
    await repo.poll();
    expect(errors).toEqual([
      `${join('mnist', 'config.json')}: "batching.maxBatchSize" must be a positive integer`,
    ]);
    expect(repo.registry.versions('mnist')).toEqual(['1']);
    expect((await repo.registry.infer('mnist', undefined, digit(1))).logits).toBeDefined();
  });

  it('marks a model with a broken config failed, with the reason', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await writeConfig(dir, 'mnist', '{ "batching": tru');
    const repo = await open(dir);
    const status = repo.registry.status('mnist', '1');
    expect(status?.state).toBe('failed');
    expect(status?.error).toContain('config.json: invalid JSON');
  });

  it('unloads a removed model only after its requests in flight', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    const log: LoaderLog = { loads: [], disposed: [] };
    const repo = await open(dir, { middleware: () => [delay(200)] }, log);
    const inFlight = repo.registry.infer('mnist', undefined, digit(2));
    await sleep(20);
    await rm(join(dir, 'mnist'), { recursive: true });
    const polled = repo.poll();
    await sleep(20);
    // Not taking new requests, but the one in flight is still running.
    expect((await rejection(repo.registry.infer('mnist', undefined, digit(2)))).code).toMatch(
      /UNAVAILABLE|NOT_FOUND/,
    );
    expect(log.disposed).toEqual([]);
    const out = await inFlight;
    expect(argmax(out.logits!.data as Float32Array)).toBe(mnistHoldout().labels[2]);
    const report = await polled;
    expect(report.removed).toEqual(['mnist']);
    expect(log.disposed).toEqual(['mnist/1']);
    expect(repo.registry.names()).toEqual(['mlp']);
    expect((await rejection(repo.registry.infer('mnist', undefined, digit(2)))).code).toBe('NOT_FOUND');
  });

  it('retires versions when the policy narrows, and watch() polls on its own', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    await addVersion(dir, 'mlp', '2', 'mlp.onnx');
    await writeConfig(dir, 'mlp', { versionPolicy: 'all' });
    const repo = await open(dir, { pollIntervalMs: 20 });
    expect(repo.registry.versions('mlp')).toEqual(['1', '2']);
    await writeConfig(dir, 'mlp', { versionPolicy: { specific: [1] } });
    for (let i = 0; i < 100 && repo.registry.versions('mlp').length !== 1; i++) await sleep(20);
    expect(repo.registry.versions('mlp')).toEqual(['1']);
  });

  it('unloadModel keeps a model unloaded across polls until loadModel', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    const repo = await open(dir);
    await repo.unloadModel('mlp');
    await repo.poll();
    expect(repo.registry.names()).toEqual([]);
    const report = await repo.loadModel('mlp');
    expect(report.loaded).toEqual(['mlp/1']);
    expect(repo.registry.isReady('mlp')).toBe(true);
  });

  it('close() during a load waits for it and disposes what it loaded', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    const log: LoaderLog = { loads: [], disposed: [] };
    const repo = new Repository(dir, { loaders: { onnx: onnxLoader(log, 200) } });
    const polled = repo.poll();
    await sleep(50);
    expect(repo.registry.status('mlp', '1')?.state).toBe('loading');
    await repo.close();
    await polled;
    expect(log.loads).toEqual(['mlp/1']);
    expect(log.disposed).toEqual(['mlp/1']);
    expect(repo.registry.names()).toEqual([]);
  });
});

describe('security', () => {
  it('rejects names that would leave the repository', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    const repo = await open(dir);
    for (const name of ['..', '../mlp', '/etc', 'a/b', 'mlp/../..', '.hidden', '', '..\\x', 'x\u0000y']) {
      const err = await rejection(() => repo.loadModel(name));
      expect(err.code, name).toBe('INVALID_ARGUMENT');
      expect((await rejection(() => repo.unloadModel(name))).code).toBe('INVALID_ARGUMENT');
    }
    expect((await rejection(() => repo.loadModel('nope'))).code).toBe('NOT_FOUND');
  });

  it('never follows symlinks out of the repository (model dirs, version dirs, model files)', async () => {
    const dir = await setup();
    const outside = await setup();
    await addVersion(outside, 'evil', '1', 'mlp.onnx');
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    await symlink(join(outside, 'evil'), join(dir, 'linked-model'));
    await mkdir(join(dir, 'linked-version'));
    await symlink(join(outside, 'evil', '1'), join(dir, 'linked-version', '1'));
    await mkdir(join(dir, 'linked-file', '1'), { recursive: true });
    await symlink(join(outside, 'evil', '1', 'model.onnx'), join(dir, 'linked-file', '1', 'model.onnx'));
    await writeConfig(dir, 'linked-labels', {});
    await addVersion(dir, 'linked-labels', '1', 'mlp.onnx');
    await symlink('/etc/hostname', join(dir, 'linked-labels', 'labels.txt'));
    const log: LoaderLog = { loads: [], disposed: [] };
    const warnings: string[] = [];
    const repo = await open(dir, { logger: { warn: (m) => warnings.push(m) } }, log);
    expect(log.loads).toEqual(['mlp/1']);
    expect(repo.registry.status('linked-labels', '1')?.error).toContain('outside the model repository');
    expect(warnings.join('\n')).toContain('outside the model repository');
    expect((await rejection(() => repo.loadModel('linked-model'))).code).toBe('INVALID_ARGUMENT');
    // A symlink that stays inside the repository is fine.
    await symlink(join(dir, 'mlp'), join(dir, 'alias'));
    expect((await repo.loadModel('alias')).loaded).toEqual(['alias/1']);
  });
});

describe('defaults and management', () => {
  it('loads through @mlserve/backend-onnx by default (dynamic import), warmup included', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await loadRepository(dir, { intraOpThreads: 1 });
    cleanups.push(() => repo.close());
    expect(repo.versions()).toMatchObject([{ name: 'mnist', state: 'ready' }]);
    // The default placement: one worker thread on two or more CPUs, the main thread on one.
    expect(repo.versions()[0]!.backend).toBe(
      defaultServing().workers > 0 ? 'worker-pool(onnxruntime-node/cpu)' : 'onnxruntime-node/cpu',
    );
    const out = await repo.registry.infer('mnist', undefined, digit(3));
    expect(argmax(out.logits!.data as Float32Array)).toBe(mnistHoldout().labels[3]);
  });

  it('management(): load by name, index of unloaded models, unload through the registry sticks', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir);
    const m = repo.management();
    await repo.registry.remove('mlp');
    await repo.poll();
    expect(repo.registry.names()).toEqual(['mnist']);
    expect(await m.index()).toEqual([{ name: 'mlp', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    await m.load('mlp');
    expect(repo.registry.isReady('mlp')).toBe(true);
    await mkdir(join(dir, 'broken', '1'), { recursive: true });
    await writeFile(join(dir, 'broken', '1', 'model.onnx'), 'garbage');
    const err = await rejection(m.load('broken'));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('model "broken" failed to load');
    expect((await rejection(m.load('../mnist'))).code).toBe('INVALID_ARGUMENT');
  });

  it('management().unload goes through the repository: it stays unloaded, the index says why, load brings it back', async () => {
    const dir = await setup();
    await addVersion(dir, 'mlp', '1', 'mlp.onnx');
    const log: LoaderLog = { loads: [], disposed: [] };
    const repo = await open(dir, { middleware: () => [delay(150)] }, log);
    const m = repo.management();
    const inFlight = repo.registry
      .infer('mlp', undefined, { features: { type: 'float32', dims: [1, 16], data: new Float32Array(16) } })
      .catch((err: unknown) => err);
    await sleep(20);
    await m.unload('mlp');
    // The request in flight finished before the model was disposed.
    expect((await inFlight) as Record<string, unknown>).toHaveProperty('scores');
    expect(log.disposed).toEqual(['mlp/1']);
    await repo.poll();
    expect(repo.registry.names()).toEqual([]);
    expect(await m.index()).toEqual([{ name: 'mlp', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    expect((await rejection(m.unload('nope'))).code).toBe('NOT_FOUND');
    expect((await rejection(m.unload('../mlp'))).code).toBe('INVALID_ARGUMENT');
    await m.load('mlp');
    expect(repo.registry.isReady('mlp')).toBe(true);
  });
});

describe('with the real middleware packages', () => {
  it('config "batching" and "cache" build @mlserve/batching and @mlserve/cache layers that work', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await writeConfig(dir, 'mnist', {
      batching: { maxBatchSize: 16, maxDelayMs: 20 },
      cache: { max: 100 },
      warmup: false,
    });
    const repo = await loadRepository(dir, { intraOpThreads: 1 });
    cleanups.push(() => repo.close());
    const outs = await Promise.all(
      Array.from({ length: 12 }, (_, i) => repo.registry.infer('mnist', undefined, digit(i))),
    );
    outs.forEach((o, i) => {
      expect(argmax(o.logits!.data as Float32Array)).toBe(mnistHoldout().labels[i]);
    });
    await repo.registry.infer('mnist', undefined, digit(0));
    const stats = repo.registry.get('mnist').stats?.() as Record<string, Record<string, number>>;
    expect(stats.batching!.batches).toBeLessThan(12);
    expect(stats.batching!.requests).toBe(12);
    expect(stats.cache).toBeDefined();
  });
});

describe('reload in place', () => {
  it('rebuilds a served version when config.json changes its pipeline, with no request failing', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    await writeConfig(dir, 'mnist', { batching: false });
    const log: LoaderLog = { loads: [], disposed: [] };
    const repo = await open(dir, {}, log);
    const events: string[] = [];
    repo.on('version', (e) => events.push(`${e.phase} ${e.version}`));
    expect(repo.registry.get('mnist').stats?.()).not.toHaveProperty('batching');
    let stop = false;
    const failures: unknown[] = [];
    let done = 0;
    const client = async () => {
      while (!stop) {
        try {
          await repo.registry.infer('mnist', undefined, digit(done % 200));
          done++;
        } catch (err) {
          failures.push(err);
        }
        await sleep(1);
      }
    };
    const clients = Promise.all([client(), client(), client()]);
    await writeConfig(dir, 'mnist', { batching: { maxBatchSize: 8, maxDelayMs: 1 } });
    const report = await repo.poll();
    expect(report.loaded).toEqual(['mnist/1']);
    await sleep(30);
    stop = true;
    await clients;
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThan(3);
    expect(events).toEqual(['reloaded 1']);
    expect(log.loads).toEqual(['mnist/1', 'mnist/1']);
    expect(log.disposed).toEqual(['mnist/1']);
    expect(repo.registry.get('mnist').stats?.()).toHaveProperty('batching');
    // Routing-only changes (labels) apply without a rebuild.
    await writeConfig(dir, 'mnist', { batching: { maxBatchSize: 8, maxDelayMs: 1 }, labels: { stable: 1 } });
    expect((await repo.poll()).loaded).toEqual([]);
    expect(log.loads).toHaveLength(2);
    expect(repo.registry.get('mnist', 'stable').version).toBe('1');
  });

  it('reloads files replaced in a served version once they settle; a broken replacement leaves the old serving', async () => {
    const dir = await setup();
    await addVersion(dir, 'm', '1', 'mlp.onnx');
    const repo = await open(dir);
    const events: string[] = [];
    repo.on('version', (e) => events.push(`${e.phase} ${e.version}`));
    await writeFile(join(dir, 'm', '1', 'model.onnx'), 'not a model any more');
    expect((await repo.poll()).failed).toEqual([]); // not settled yet
    const broken = await repo.poll();
    expect(broken.failed).toEqual(['m/1']);
    expect(events).toEqual(['reloadFailed 1']);
    expect(repo.registry.get('m').metadata().inputs[0]!.name).toBe('features');
    expect((await repo.poll()).failed).toEqual([]); // the same broken files are not retried
    await addVersion(dir, 'm', '1', 'mnist-cnn.onnx');
    await repo.poll();
    expect((await repo.poll()).loaded).toEqual(['m/1']);
    expect(repo.registry.get('m').metadata().inputs[0]!.name).toBe('image');
    const out = await repo.registry.infer('m', undefined, digit(4));
    expect(argmax(out.logits!.data as Float32Array)).toBe(mnistHoldout().labels[4]);
  });
});

describe('the repository directory itself', () => {
  it('rejects a missing directory with NOT_FOUND, a file with INVALID_ARGUMENT', async () => {
    const dir = await setup();
    expect((await rejection(loadRepository(join(dir, 'nope')))).code).toBe('NOT_FOUND');
    await writeFile(join(dir, 'file'), 'x');
    expect((await rejection(loadRepository(join(dir, 'file')))).code).toBe('INVALID_ARGUMENT');
  });

  it('keeps serving when the directory becomes unreadable, and reports it', async () => {
    const t = await tempRepo();
    await addVersion(t.dir, 'mnist', '1');
    const errors: string[] = [];
    const repo = await open(t.dir, { logger: { error: (m) => errors.push(m) } });
    await t.cleanup();
    const report = await repo.poll();
    expect(report.removed).toEqual([]);
    expect(errors.join('\n')).toContain('cannot read the model repository');
    expect((await repo.registry.infer('mnist', undefined, digit(0))).logits).toBeDefined();
  });
});

describe('watching', () => {
  it('with fsEvents, picks up a new version long before the poll interval', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const repo = await open(dir, { pollIntervalMs: 60_000, fsEvents: true });
    await sleep(100); // the watcher starts after the first scan
    const started = Date.now();
    await addVersion(dir, 'mnist', '2');
    for (let i = 0; i < 200 && repo.registry.versions('mnist').join() !== '2'; i++) await sleep(25);
    expect(repo.registry.versions('mnist')).toEqual(['2']);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
