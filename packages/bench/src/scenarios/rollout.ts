import { interleaved, type LoadResult, openLoop, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * The gate's cost to live traffic: mnist-cnn served from a repository (in-thread onnxruntime, one
 * intra-op thread, no batching), driven open-loop at half the rate it sustains, with and without a
 * second version in shadow (mirrored copies of every request offered to the gate, which runs at
 * most its default 5% of a core). Two repositories in one process, measured in interleaved
 * rounds.
 */
export default scenario({
  name: 'rollout',
  title:
    'Rollout gate: p99 of live traffic while a new version is shadowed (mnist-cnn, half the sustainable rate)',
  async run({ pick, log, headline }) {
    const { mkdtemp, mkdir, copyFile, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { loadRepository } = await import('@mlserve/repository');
    const { mnistHoldout, modelPath } = await import('@mlserve/test-utils');
    const holdout = mnistHoldout();
    const images = Array.from({ length: holdout.count }, (_, i) => ({
      image: { type: 'float32' as const, dims: [1, 1, 28, 28], data: holdout.image(i) },
    }));
    const config = (maxShadowShare?: number) => ({
      workers: 0,
      batching: false,
      backendOptions: { intraOpNumThreads: 1, interOpNumThreads: 1 },
      warmup: { batchSizes: [1] },
      // Never decides during the run: the shadow stays on for the whole measurement.
      rollout: {
        gate: {
          shadowRequests: 1_000_000,
          maxShadowMs: 3_600_000,
          replay: false,
          ...(maxShadowShare !== undefined && { maxShadowShare }),
        },
      },
    });
    const make = async (versions: string[], maxShadowShare?: number) => {
      const dir = await mkdtemp(join(tmpdir(), 'mlserve-bench-rollout-'));
      await mkdir(join(dir, 'mnist'), { recursive: true });
      await writeFile(join(dir, 'mnist', 'config.json'), JSON.stringify(config(maxShadowShare)));
      await mkdir(join(dir, 'mnist', '1'), { recursive: true });
      await copyFile(modelPath('mnist-cnn.onnx'), join(dir, 'mnist', '1', 'model.onnx'));
      const repo = await loadRepository(dir);
      for (const v of versions) {
        await mkdir(join(dir, 'mnist', v), { recursive: true });
        await copyFile(modelPath('mnist-cnn.onnx'), join(dir, 'mnist', v, 'model.onnx'));
      }
      if (versions.length > 0) await repo.loadModel('mnist');
      return { repo, dir };
    };
    const plain = await make([]);
    const shadowed = await make(['2']);
    const tuned = await make(['2'], 0.01);
    for (const r of [shadowed, tuned]) {
      const phase = r.repo.registry.status('mnist', '2')?.rollout?.phase;
      if (phase !== 'shadow') throw new Error(`expected version 2 in shadow, got ${phase}`);
    }
    const call = (repo: typeof plain.repo) => (i: number) =>
      repo.registry.infer('mnist', undefined, images[i % images.length]!, { id: `r${i}` });
    // The sustainable rate: the most an open loop keeps up with (all of it served, p50 within 2 ms
    // of one caller's: the driver's 1 ms timer makes a floor), from one caller's back-to-back rate
    // down in steps of 20%.
    const solo = await timePerCall('one caller', call(plain.repo), { iterations: pick(3000, 800) });
    let sustainable = solo.throughput;
    for (let i = 0; i < 8; i++) {
      const probe = await openLoop('probe', call(plain.repo), {
        rate: sustainable,
        durationMs: pick(1500, 800),
      });
      log(
        `probe ${Math.round(sustainable)} req/s: p50 ${probe.p50.toFixed(3)} ms (one caller ${solo.p50.toFixed(3)} ms)`,
      );
      if (probe.p50 <= solo.p50 + 2 && probe.throughput >= 0.97 * sustainable) break;
      sustainable *= 0.8;
    }
    const rate = Math.max(50, Math.round(sustainable / 2));
    const durationMs = pick(4000, 1500);
    const rounds = pick(3, 2);
    log(
      `sustainable ${Math.round(sustainable)} req/s (one caller back to back: ${Math.round(solo.throughput)}); open loop at ${rate} req/s, ${durationMs} ms, ${rounds} rounds`,
    );
    const results = await interleaved(rounds, [
      { name: 'v1 alone', run: () => openLoop('v1 alone', call(plain.repo), { rate, durationMs }) },
      {
        name: 'v1 with v2 in shadow (default maxShadowShare 0.05)',
        run: () => openLoop('shadow', call(shadowed.repo), { rate, durationMs }),
      },
      {
        name: 'v1 with v2 in shadow (maxShadowShare 0.01)',
        run: () => openLoop('shadow 0.01', call(tuned.repo), { rate, durationMs }),
      },
    ]);
    // The gate publishes its figures when it decides: decide by hand to read them.
    const [alone, withShadow, withTuned] = results as [LoadResult, LoadResult, LoadResult];
    for (const [r, row] of [
      [shadowed, withShadow],
      [tuned, withTuned],
    ] as const) {
      await r.repo.reject('mnist', '2', 'benchmark over');
      const f = r.repo.registry.status('mnist', '2')?.rollout?.figures ?? {};
      row.extra = { 'shadow compared (all rounds)': f.requests ?? 0, 'copies dropped': f.dropped ?? 0 };
    }
    const figures = { requests: withShadow.extra?.['shadow compared (all rounds)'] ?? 0 } as const;
    const ratio = withShadow.p99 / alone.p99;
    const ratioTuned = withTuned.p99 / alone.p99;
    headline(
      `Rollout gate: live p99 with a version in shadow at half the sustainable rate is ${ratio.toFixed(2)}x the p99 without with the default maxShadowShare 0.05, ${ratioTuned.toFixed(2)}x with 0.01 (target <= 1.2x; ${figures.requests} requests compared at the default).`,
    );
    await plain.repo.close();
    await shadowed.repo.close();
    await tuned.repo.close();
    await rm(tuned.dir, { recursive: true, force: true });
    await rm(plain.dir, { recursive: true, force: true });
    await rm(shadowed.dir, { recursive: true, force: true });
    return [
      `Offered load ${rate} req/s: half of ${Math.round(sustainable)} req/s, the most an open loop kept up with here (one caller back to back: ${Math.round(solo.throughput)} req/s), no shadow; ${durationMs} ms windows, median of ${rounds} interleaved rounds.`,
      `Live p99 with the shadow: **${ratio.toFixed(2)}x** the p99 without at the default maxShadowShare (0.05), **${ratioTuned.toFixed(2)}x** at 0.01 (target <= 1.2x).`,
      '',
      ratioTable('live traffic', alone, [withShadow, withTuned]),
      'Cold-start vs warm latency per model and throughput of many models under a memory budget: the `models` scenario.',
      '',
    ].join('\n');
  },
});
