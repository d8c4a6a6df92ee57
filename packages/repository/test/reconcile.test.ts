import { invalidArgument } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { pipelineKey } from '../src/build.js';
import { type ModelConfig, parseModelConfig } from '../src/config.js';
import { type ModelView, reconcile, retirements, type VersionView } from '../src/reconcile.js';
import type { ScannedModel } from '../src/scan.js';

const cfg = (raw: unknown = {}): ModelConfig => parseModelConfig(raw, 'm/config.json');

function scan(versions: Record<string, string>, config: unknown = {}, configFp = 'cfg'): ScannedModel {
  return {
    name: 'm',
    dir: '/r/m',
    configFile: 'm/config.json',
    configFp,
    config: cfg(config),
    versions: new Map(
      Object.entries(versions).map(([v, fp]) => [
        v,
        { version: v, dir: `/r/m/${v}`, file: `/r/m/${v}/model.onnx`, backend: 'onnx' as const, fp },
      ]),
    ),
  };
}

function view(
  versions: Record<string, VersionView> = {},
  config: ModelConfig | null = cfg(),
  seen: Record<string, string> = {},
): ModelView {
  return {
    config: config ?? undefined,
    configFp: config ? 'cfg' : undefined,
    configError: undefined,
    versions: new Map(Object.entries(versions)),
    seen: new Map(Object.entries(seen)),
  };
}

const ready = (fp: string, config = cfg()): VersionView => ({
  state: 'ready',
  fp,
  configFp: 'cfg',
  pipelineKey: pipelineKey(config),
});

describe('reconcile (plain data)', () => {
  it('loads the latest version at once when forced, and notes the new config', () => {
    const plan = reconcile(view({}, null), scan({ '1': 'a', '3': 'b', '10': 'c' }), true);
    expect(plan.actions).toEqual([{ type: 'load', version: '10', config: plan.config }]);
    expect(plan.desired).toEqual(['10']);
    expect(plan.configChange).toMatchObject({ kind: 'changed', configFp: 'cfg', hadConfig: false });
  });

  it('waits for a new version until its fingerprint is the same at two scans', () => {
    const first = reconcile(view({ '1': ready('a') }), scan({ '1': 'a', '2': 'x' }), false);
    expect(first.actions).toEqual([{ type: 'wait', version: '2' }]);
    expect(first.seen.get('2')).toBe('x');
    const changed = reconcile(
      view({ '1': ready('a') }, cfg(), { '2': 'x' }),
      scan({ '1': 'a', '2': 'y' }),
      false,
    );
    expect(changed.actions).toEqual([{ type: 'wait', version: '2' }]);
    const settled = reconcile(
      view({ '1': ready('a') }, cfg(), { '2': 'y' }),
      scan({ '1': 'a', '2': 'y' }),
      false,
    );
    expect(settled.actions).toMatchObject([{ type: 'load', version: '2' }]);
    expect(settled.seen.has('2')).toBe(false);
  });

  it('does nothing for a served version whose files and pipeline are unchanged', () => {
    const plan = reconcile(view({ '1': ready('a') }), scan({ '1': 'a' }), false);
    expect(plan.actions).toEqual([]);
    expect(plan.configChange).toBeUndefined();
  });

  it('rebuilds in place when the pipeline settings change, not when only routing fields do', () => {
    const routing = reconcile(
      view({ '1': ready('a') }),
      scan({ '1': 'a' }, { labels: { stable: '1' } }, 'cfg2'),
      false,
    );
    expect(routing.actions).toEqual([]);
    const pipeline = reconcile(
      view({ '1': ready('a') }),
      scan({ '1': 'a' }, { batching: true }, 'cfg2'),
      false,
    );
    expect(pipeline.actions).toMatchObject([{ type: 'reload', version: '1' }]);
  });

  it('does not retry a failed version with the same files and config; retries on new files', () => {
    const failed: VersionView = { state: 'failed', fp: 'a', configFp: 'cfg' };
    expect(reconcile(view({ '1': failed }), scan({ '1': 'a' }), true).actions).toEqual([]);
    expect(reconcile(view({ '1': failed }), scan({ '1': 'b' }), true).actions).toMatchObject([
      { type: 'load', version: '1' },
    ]);
  });

  it('with a broken config: loads nothing new when a config was valid before', () => {
    const broken: ScannedModel = {
      ...scan({ '1': 'a', '2': 'b' }),
      configFp: 'bad',
      configError: invalidArgument('bad'),
    };
    delete broken.config;
    const plan = reconcile(view({ '1': ready('a') }), broken, true);
    expect(plan.actions).toEqual([]);
    expect(plan.config).toBeUndefined();
    expect(plan.configChange).toMatchObject({ kind: 'invalid', keepsServing: true });
  });

  it('with a broken config and none before: the newest version is loaded to fail with the reason, once', () => {
    const broken: ScannedModel = {
      ...scan({ '1': 'a', '2': 'b' }),
      configFp: 'bad',
      configError: invalidArgument('bad'),
    };
    delete broken.config;
    const plan = reconcile(view({}, null), broken, true);
    expect(plan.actions).toEqual([{ type: 'load', version: '2', config: undefined }]);
    const after: ModelView = {
      ...view({ '2': { state: 'failed', fp: 'b', configFp: 'bad' } }, null),
      configFp: 'bad',
      configError: invalidArgument('bad'),
    };
    expect(reconcile(after, broken, true).actions).toEqual([]);
  });

  it('retires what the policy dropped only once a kept version is ready', () => {
    const loading: VersionView = { state: 'loading', fp: 'b', configFp: 'cfg' };
    const onDisk = new Set(['1', '2']);
    expect(retirements(view({ '1': ready('a'), '2': loading }), onDisk, ['2'])).toEqual([]);
    expect(retirements(view({ '1': ready('a'), '2': ready('b') }), onDisk, ['2'])).toEqual(['1']);
    // A version whose directory is gone retires at once.
    expect(retirements(view({ '1': ready('a'), '2': loading }), new Set(['2']), ['2'])).toEqual(['1']);
  });
});
