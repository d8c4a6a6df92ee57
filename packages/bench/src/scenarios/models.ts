import { closedLoop, interleaved, type LoadResult, ratioTable, scenario } from '../harness.js';

/**
 * Models on demand under a memory budget (@mlserve/repository `modelMemoryBudget`), with the
 * repository's defaults (no config.json: default placement, batching and warmup).
 *
 * 0. Start-up with N models: all loaded at start vs on demand (nothing loads; metadata from the
 *    ONNX header), and the first request to each.
 * 1. Cold start vs warm latency per model: three models under a budget that holds one, so each
 *    model's first request after another's loads it again (load + default warmup), then warm
 *    requests run on it.
 * 2. Throughput of many models: copies of mnist-cnn, all loaded (no budget) vs under a budget for
 *    a quarter of them, with traffic skewed to as many hot models as fit, and uniform over all of
 *    them (most requests then find their model unloaded). Closed loop, one process.
 *
 * Costs are set through `memoryCost` so the budget holds an exact number of models (the measured
 * RSS growth of each model is reported beside it): what is measured here is the cost of loading on
 * demand, not the RSS measurement.
 */
export default scenario({
  name: 'models',
  title:
    'Models on demand: cold-start vs warm latency per model, throughput of many models under a memory budget',
  async run({ pick, log, headline }) {
    const { mkdtemp, mkdir, copyFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { loadRepository, zeroInputs } = await import('@mlserve/repository');
    const { modelPath } = await import('@mlserve/test-utils');
    type Repo = Awaited<ReturnType<typeof loadRepository>>;
    const MiB = 2 ** 20;
    const inputsOf = (repo: Repo, name: string) => {
      const meta = repo.registry.get(name).metadata();
      return zeroInputs(meta, meta.maxBatchSize > 0 && meta.inputs.every((i) => i.batched) ? 1 : 0);
    };
    const sections: string[] = [];

    // 0. Start-up: N models, all loaded at start (no budget) vs on demand under a budget (nothing
    //    loads: metadata from each file's ONNX header), then the first request to each.
    const startKinds = pick(
      [
        ['mnist-cnn.onnx', 40],
        ['mobilenetv2.onnx', 6],
      ] as const,
      [['mnist-cnn.onnx', 8]] as const,
    );
    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const startRows: string[] = [];
    for (const [kind, n] of startKinds) {
      const dir0 = await mkdtemp(join(tmpdir(), 'mlserve-bench-models-'));
      const names0 = Array.from({ length: n }, (_, i) => `m${String(i).padStart(2, '0')}`);
      for (const m of names0) {
        await mkdir(join(dir0, m, '1'), { recursive: true });
        await copyFile(modelPath(kind), join(dir0, m, '1', 'model.onnx'));
      }
      const times: Record<string, number[]> = { eager: [], eagerBudget: [], lazy: [], first: [] };
      for (let r = 0; r < pick(2, 1); r++) {
        for (const mode of ['eager', 'eagerBudget', 'lazy'] as const) {
          const t0 = performance.now();
          const repo = await loadRepository(dir0, {
            ...(mode !== 'eager' && { modelMemoryBudget: '64GiB' }),
            // A custom loader: its metadata is known only by loading it, so it loads at start (as
            // every model did under a budget before the ONNX header was read).
            ...(mode === 'eagerBudget' && {
              loaders: { onnx: (src: string, o: Record<string, unknown>) => loadOnnxModel(src, o) },
            }),
          });
          times[mode]!.push(performance.now() - t0);
          if (mode === 'lazy') {
            if (repo.memory()!.loads !== 0) throw new Error('a model loaded at start under a budget');
            const t1 = performance.now();
            for (const m of names0) await repo.registry.infer(m, undefined, inputsOf(repo, m));
            times.first!.push(performance.now() - t1);
          }
          await repo.close();
        }
      }
      await rm(dir0, { recursive: true, force: true });
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const label = kind.replace('.onnx', '');
      log(
        `start-up ${n} x ${label}: eager ${med(times.eager!).toFixed(0)} ms, lazy ${med(times.lazy!).toFixed(0)} ms`,
      );
      startRows.push(
        `| ${n} x ${label} | ${med(times.eager!).toFixed(0)} | ${med(times.eagerBudget!).toFixed(0)} | ${med(times.lazy!).toFixed(1)} | ${(med(times.eager!) / med(times.lazy!)).toFixed(0)}x | ${med(times.first!).toFixed(0)} |`,
      );
    }
    sections.push(
      'Start-up: a repository of N copies of a model with the defaults (warmup included), all loaded at start (no budget), loaded once at start under a budget (a custom loader: how every model started under a budget before the ONNX header was read), and on demand (a budget, the default loader: nothing loads, metadata from the header); then the first request to each, one at a time.',
      '',
      '| models | all loaded at start (ms) | under a budget, loaded once at start (ms) | on demand (ms) | eager / on demand | then first request to each (ms) |',
      '| --- | --- | --- | --- | --- | --- |',
      ...startRows,
      '',
    );

    // 1. Cold start vs warm, per model.
    const kinds = pick(
      ['mlp.onnx', 'mnist-cnn.onnx', 'mobilenetv2.onnx'] as const,
      ['mlp.onnx', 'mnist-cnn.onnx'] as const,
    );
    const dir1 = await mkdtemp(join(tmpdir(), 'mlserve-bench-models-'));
    for (const k of kinds) {
      await mkdir(join(dir1, k.replace('.onnx', ''), '1'), { recursive: true });
      await copyFile(modelPath(k), join(dir1, k.replace('.onnx', ''), '1', 'model.onnx'));
    }
    const measured: Record<string, number> = {};
    const one = await loadRepository(dir1, {
      modelMemoryBudget: 1,
      memoryCost: (name, _v, bytes) => {
        measured[name] = bytes;
        return 1;
      },
    });
    // The load and warmup alone (the cold request also waits for the previous model's disposal).
    const loadMs: Record<string, number[]> = {};
    one.on('version', (e) => {
      if (e.phase === 'coldStart') (loadMs[e.name] ??= []).push(e.ms ?? 0);
    });
    const rounds = pick(5, 2);
    const warmCalls = pick(50, 10);
    const cold: Record<string, number[]> = {};
    const warm: Record<string, number[]> = {};
    const names = kinds.map((k) => k.replace('.onnx', ''));
    const inputs = Object.fromEntries(names.map((n) => [n, inputsOf(one, n)]));
    for (let r = 0; r < rounds; r++) {
      for (const n of names) {
        const t0 = performance.now();
        await one.registry.infer(n, undefined, inputs[n]!);
        (cold[n] ??= []).push(performance.now() - t0);
        for (let i = 0; i < warmCalls; i++) {
          const t = performance.now();
          await one.registry.infer(n, undefined, inputs[n]!);
          (warm[n] ??= []).push(performance.now() - t);
        }
      }
    }
    const m1 = one.memory()!;
    await one.close();
    await rm(dir1, { recursive: true, force: true });
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s[Math.floor(s.length / 2)] ?? Number.NaN;
    };
    const rows1 = names.map((n) => {
      const c = median(cold[n]!);
      const w = median(warm[n]!);
      return `| ${n} | ${c.toFixed(1)} | ${median(loadMs[n] ?? []).toFixed(1)} | ${w.toFixed(3)} | ${(c / w).toFixed(0)}x | ${((measured[n] ?? 0) / MiB).toFixed(1)} |`;
    });
    log(`cold starts ${m1.coldStarts}, evictions ${m1.evictions}`);
    sections.push(
      `Cold start vs warm: ${names.length} models under a budget that holds one, so the first request to each after another's reloads it (load and the default warmup); median of ${rounds} cold starts and of ${rounds * warmCalls} warm requests per model, one at a time.`,
      '',
      '| model | cold start (ms) | of which load + warmup (ms) | warm (ms) | cold / warm | measured RSS growth at load (MiB) |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows1,
      '',
    );

    // 2. Throughput of many models under the budget.
    const count = pick(20, 8);
    const fit = Math.max(2, Math.round(count / 4));
    const dir2 = await mkdtemp(join(tmpdir(), 'mlserve-bench-models-'));
    const many = Array.from({ length: count }, (_, i) => `mnist${String(i).padStart(2, '0')}`);
    for (const n of many) {
      await mkdir(join(dir2, n, '1'), { recursive: true });
      await copyFile(modelPath('mnist-cnn.onnx'), join(dir2, n, '1', 'model.onnx'));
    }
    const all = await loadRepository(dir2);
    const budget = await loadRepository(dir2, {
      modelMemoryBudget: fit * 100 * MiB,
      memoryCost: () => 100 * MiB,
    });
    const x = inputsOf(all, many[0]!);
    const durationMs = pick(3000, 1000);
    const concurrency = 8;
    // A cheap deterministic pick per request: a hash of its index.
    const spread = (i: number) => ((i * 2654435761) >>> 0) / 2 ** 32;
    // 90% of the requests to `hotCount` models (one fewer than fit: the last slot takes the
    // tail), 10% spread over the others.
    const hotCount = fit - 1;
    const skewed = (i: number) => {
      const u = spread(i);
      return u < 0.9
        ? many[Math.floor((u / 0.9) * hotCount)]!
        : many[hotCount + Math.floor(((u - 0.9) / 0.1) * (count - hotCount))]!;
    };
    const uniform = (i: number) => many[Math.floor(spread(i) * count)]!;
    const run = async (label: string, repo: Repo, pickModel: (i: number) => string) => {
      const before = repo.memory();
      const res = await closedLoop(label, (i) => repo.registry.infer(pickModel(i), undefined, x), {
        concurrency,
        durationMs,
      });
      const after = repo.memory();
      if (before && after) {
        res.extra = {
          'cold starts': after.coldStarts - before.coldStarts,
          evictions: after.evictions - before.evictions,
        };
      }
      log(`${label}: ${Math.round(res.throughput)} req/s, p99 ${res.p99.toFixed(2)} ms`);
      return res;
    };
    const rounds2 = pick(3, 1);
    const [base, hot, thrash, baseSkewed] = (await interleaved(rounds2, [
      { name: `all ${count} loaded, uniform`, run: () => run('all, uniform', all, uniform) },
      {
        name: `budget for ${fit}, 90% to ${hotCount} hot models`,
        run: () => run('budget, skewed', budget, skewed),
      },
      {
        name: `budget for ${fit}, uniform over ${count}`,
        run: () => run('budget, uniform', budget, uniform),
      },
      {
        name: `all ${count} loaded, 90% to ${hotCount} hot models`,
        run: () => run('all, skewed', all, skewed),
      },
    ])) as [LoadResult, LoadResult, LoadResult, LoadResult];
    await all.close();
    await budget.close();
    await rm(dir2, { recursive: true, force: true });
    const results: LoadResult[] = [hot, thrash, baseSkewed];
    const hotRatio = hot.throughput / baseSkewed.throughput;
    const thrashRatio = thrash.throughput / base.throughput;
    headline(
      `Models on demand: a cold start costs ${names.map((n) => `${(median(cold[n]!) / median(warm[n]!)).toFixed(0)}x (${n})`).join(', ')} a warm request; ${count} mnist-cnn under a budget for ${fit} serve ${hotRatio.toFixed(2)}x the throughput of all loaded when 90% of the traffic goes to ${hotCount} hot models, ${thrashRatio.toFixed(2)}x when it is uniform.`,
    );
    sections.push(
      `Throughput of many models: ${count} copies of mnist-cnn, all loaded vs under a budget for ${fit} (costs set to 100 MiB each), ${concurrency} callers back to back, ${durationMs} ms windows, median of ${rounds2} interleaved rounds.`,
      `Under the budget: **${hotRatio.toFixed(2)}x** the throughput of all loaded with 90% of the traffic to ${hotCount} hot models, **${thrashRatio.toFixed(2)}x** with uniform traffic (most requests find their model unloaded and wait for a load).`,
      '',
      ratioTable('many models', base, results),
    );
    return sections.join('\n');
  },
});
