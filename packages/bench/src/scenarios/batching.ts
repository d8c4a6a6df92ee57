import { concat, type Model, type Tensor, type Tensors } from '@mlserve/core';
import { closedLoop, type LoadResult, openLoop, perCpuRatio, ratioTable, scenario } from '../harness.js';

/**
 * Like the harness's `interleaved`, but each round starts at a different configuration, so none
 * always runs right after the same neighbour (the machine heats up and others' load comes and goes).
 * Keeps, per configuration, the round with the median throughput.
 */
async function rotated(
  rounds: number,
  runs: { name: string; run: () => Promise<LoadResult> }[],
): Promise<LoadResult[]> {
  const all = runs.map(() => [] as LoadResult[]);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < runs.length; k++) {
      const idx = (k + r) % runs.length;
      const res = await runs[idx]!.run();
      res.name = runs[idx]!.name;
      all[idx]!.push(res);
    }
  }
  return all.map((list) => [...list].sort((a, b) => a.throughput - b.throughput)[list.length >> 1]!);
}

/**
 * The reference the real batcher is held against: a minimal batcher of the kind one writes in 40
 * lines (one queue, a batch released whenever the model is free, rows copied back out), with
 * none of the real one's guarantees (no validation, deadlines, cancellation, priorities, padding,
 * parameters or metrics). What the real batcher costs beyond it is the price of those.
 */
function minimalBatcher(inner: Model, maxBatch: number): Model {
  const queue: { inputs: Tensors; resolve: (t: Tensors) => void; reject: (e: unknown) => void }[] = [];
  const names = inner.metadata().inputs.map((i) => i.name);
  let busy = false;
  const pump = async (): Promise<void> => {
    if (busy || queue.length === 0) return;
    busy = true;
    const batch = queue.splice(0, maxBatch);
    try {
      const inputs: Tensors = {};
      for (const n of names) inputs[n] = concat(batch.map((b) => b.inputs[n]!));
      const out = await inner.infer(inputs);
      batch.forEach((b, row) => {
        const mine: Tensors = {};
        for (const [k, t] of Object.entries(out)) {
          const per = t.data.length / t.dims[0]!;
          const data = (t.data as Float32Array).slice(row * per, (row + 1) * per);
          mine[k] = { type: t.type, dims: [1, ...t.dims.slice(1)], data } as Tensor;
        }
        b.resolve(mine);
      });
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
    busy = false;
    setImmediate(pump);
  };
  return {
    name: inner.name,
    version: inner.version,
    metadata: () => inner.metadata(),
    dispose: async () => {},
    infer: (inputs) =>
      new Promise((resolve, reject) => {
        queue.push({ inputs, resolve, reject });
        if (!busy) setImmediate(pump);
      }),
  };
}

function floatRequests(n: number, name: string, dims: number[]): Tensors[] {
  const size = dims.reduce((a, b) => a * b, 1);
  return Array.from({ length: n }, () => ({
    [name]: {
      type: 'float32' as const,
      dims,
      data: Float32Array.from({ length: size }, () => Math.random()),
    },
  }));
}

/** tiny-text requests of 8 to 64 tokens (uniform), so batches must pad to their longest row. */
function textRequests(n: number): Tensors[] {
  return Array.from({ length: n }, () => {
    const len = 8 + Math.floor(Math.random() * 57);
    const ids = BigInt64Array.from({ length: len }, () => BigInt(1 + Math.floor(Math.random() * 999)));
    return {
      input_ids: { type: 'int64' as const, dims: [1, len], data: ids },
      attention_mask: { type: 'int64' as const, dims: [1, len], data: new BigInt64Array(len).fill(1n) },
    };
  });
}

/**
 * Dynamic batching against one model call per request, on real onnxruntime-node sessions (one
 * intra-op thread), closed loop at 1, 16, 64 and 256 concurrent callers; then open loop (fixed
 * arrival rates) on mnist-cnn, where queueing shows in p99.
 */
export default scenario({
  name: 'batching',
  title: 'Dynamic batching: throughput and p99 by concurrency, with and without batching',
  async run({ pick, log, chart, headline }) {
    const { batching } = await import('@mlserve/batching');
    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const { modelPath } = await import('@mlserve/test-utils');
    const durationMs = pick(1500, 500);
    const warmupMs = pick(300, 150);
    const rounds = pick(2, 1);
    const levels = pick([1, 16, 64, 256], [1, 256]);
    const threads = { intraOpNumThreads: 1, interOpNumThreads: 1 };
    const cases = [
      { label: 'mlp', file: 'mlp.onnx' as const, reqs: floatRequests(1024, 'features', [1, 16]), max: 64 },
      {
        label: 'mnist-cnn',
        file: 'mnist-cnn.onnx' as const,
        reqs: floatRequests(256, 'image', [1, 1, 28, 28]),
        max: 32,
      },
      { label: 'tiny-text (8-64 tokens)', file: 'tiny-text.onnx' as const, reqs: textRequests(512), max: 32 },
    ];
    const sections: string[] = [
      'One onnxruntime-node session per model (`intraOpNumThreads: 1`), in process, closed loop: each caller',
      'sends its next request when the last returns. tiny-text requests have 8 to 64 tokens; batches pad',
      'to their longest row (`padValues` 0 for both inputs). Rounds rotated, median round kept. The machine',
      'is shared and noisy (2 cores): read ratios within a table, not absolute figures.',
      '',
    ];
    const bars: { label: string; value: number }[] = [];
    const top: string[] = [];
    const summary: string[] = [];
    const withStats = (r: LoadResult, m: Model) => {
      const s = m.stats?.().batching as { averageBatchSize: number } | undefined;
      if (s) r.extra = { 'avg batch': s.averageBatchSize.toFixed(1) };
      return r;
    };
    let cnnModels: { plain: Model; batched: Model } | undefined;
    let cnnBest = 0;
    const disposers: Model[] = [];
    for (const c of cases) {
      const plain = await loadOnnxModel(modelPath(c.file), {
        ...threads,
        ...(c.file === 'tiny-text.onnx' ? { padValues: { input_ids: 0n, attention_mask: 0n } } : {}),
      });
      disposers.push(plain);
      const cfg = `batching({ maxBatchSize: ${c.max}, maxDelayMs: 'auto' })`;
      for (const concurrency of levels) {
        log(`${c.label}: ${concurrency} callers, with and without batching`);
        // A fresh batching layer per level, so its stats describe this level only.
        const batched = batching({ maxBatchSize: c.max, maxDelayMs: 'auto' })(plain);
        // Fixed delays beside 'auto', so the table shows how far auto is from the best of them.
        const fixed = [0, 1].map((d) => ({ d, m: batching({ maxBatchSize: c.max, maxDelayMs: d })(plain) }));
        // At the top level, the minimal batcher as a reference (not for tiny-text: it cannot pad).
        const minimal =
          concurrency === levels[levels.length - 1] && c.file !== 'tiny-text.onnx'
            ? minimalBatcher(plain, c.max)
            : undefined;
        const load = (m: Model) => () =>
          closedLoop('', (i) => m.infer(c.reqs[i % c.reqs.length]!), { concurrency, durationMs, warmupMs });
        const [base, b, ...fx] = (await rotated(rounds, [
          { name: 'one call per request', run: load(plain) },
          { name: cfg, run: load(batched) },
          ...fixed.map((f) => ({ name: `maxBatchSize: ${c.max}, maxDelayMs: ${f.d}`, run: load(f.m) })),
          ...(minimal ? [{ name: 'reference: a minimal 40-line batcher', run: load(minimal) }] : []),
        ])) as [LoadResult, LoadResult, ...LoadResult[]];
        withStats(b, batched);
        for (const [k, f] of fixed.entries()) withStats(fx[k]!, f.m);
        sections.push(ratioTable(`${c.label}, ${concurrency} concurrent callers`, base, [b, ...fx]));
        if (concurrency === levels[levels.length - 1]) {
          const one = fx[1]!;
          summary.push(
            `${c.label} at ${concurrency} callers, \`maxBatchSize: ${c.max}, maxDelayMs: 1\`: ${(one.throughput / base.throughput).toFixed(2)}x one call per request (${perCpuRatio(one, base)}x per CPU-second)` +
              (minimal
                ? `; the minimal batcher ${(fx[2]!.throughput / base.throughput).toFixed(2)}x (${perCpuRatio(fx[2]!, base)}x per CPU-second)`
                : '') +
              '.',
          );
        }
        bars.push({ label: `${c.label}, ${concurrency} callers`, value: b.throughput / base.throughput });
        if (concurrency === levels[levels.length - 1]) {
          top.push(
            `${c.label} ${(b.throughput / base.throughput).toFixed(2)}x (p99 ${b.p99.toFixed(1)} vs ${base.p99.toFixed(1)} ms)`,
          );
          summary.push(
            `${c.label} at ${concurrency} callers: ${(b.throughput / base.throughput).toFixed(2)}x the throughput (${perCpuRatio(b, base)}x per CPU-second) ` +
              `(${Math.round(b.throughput)} vs ${Math.round(base.throughput)} req/s), p99 ${b.p99.toFixed(1)} ms vs ${base.p99.toFixed(1)} ms.`,
          );
        }
        if (concurrency === 1) {
          summary.push(
            `${c.label}, a lone sequential caller: 'auto' gives ${(b.throughput / base.throughput).toFixed(2)}x the throughput of no batching (${perCpuRatio(b, base)}x per CPU-second); batching costs ${(((b.p50 - base.p50) / base.p50) * 100).toFixed(0)}% on the median ` +
              `(${(b.p50 * 1000).toFixed(0)} us vs ${(base.p50 * 1000).toFixed(0)} us).`,
          );
        }
        if (c.file === 'mnist-cnn.onnx') {
          cnnBest = Math.max(cnnBest, base.throughput);
          cnnModels = { plain, batched };
        }
      }
    }

    // Open loop on mnist-cnn: arrivals at a fixed rate whatever the latency (queueing is not hidden).
    if (cnnModels) {
      const reqs = cases[1]!.reqs;
      const rates = pick([0.7, 1.5], [1.5]).map((f) => Math.max(50, Math.round(f * cnnBest)));
      for (const rate of rates) {
        log(`mnist-cnn open loop at ${rate} req/s`);
        let j = 0;
        const fresh = batching({ maxBatchSize: 32, maxDelayMs: 'auto' })(cnnModels.plain);
        const fixed = batching({ maxBatchSize: 32, maxDelayMs: 2 })(cnnModels.plain);
        const open = (m: Model) => () =>
          openLoop('', () => m.infer(reqs[j++ % reqs.length]!), {
            rate,
            durationMs,
            warmupMs,
            maxInFlight: 2048,
          });
        const [base, auto, two] = (await rotated(rounds, [
          { name: 'one call per request', run: open(cnnModels.plain) },
          { name: "batching({ maxDelayMs: 'auto' })", run: open(fresh) },
          { name: 'batching({ maxDelayMs: 2 })', run: open(fixed) },
        ])) as [LoadResult, LoadResult, LoadResult];
        for (const r of [base, auto, two]) r.extra = { dropped: r.dropped ?? 0 };
        withStats(auto, fresh);
        withStats(two, fixed);
        for (const r of [auto, two]) r.extra = { ...r.extra, dropped: r.dropped ?? 0 };
        sections.push(
          ratioTable(
            `mnist-cnn, open loop at ${rate} req/s (${(rate / cnnBest).toFixed(1)}x the best unbatched closed-loop throughput)`,
            base,
            [auto, two],
          ),
        );
        summary.push(
          `mnist-cnn, open loop at ${rate} req/s: p99 ${auto.p99.toFixed(1)} ms with 'auto' batching against ${base.p99.toFixed(1)} ms without.`,
        );
      }
    }
    headline(
      `**Batching** at ${levels[levels.length - 1]} concurrent callers, throughput x one call per request: ${top.join('; ')}.`,
    );
    for (const m of disposers) await m.dispose();
    const picture = chart(
      'batching',
      'Throughput with batching, x one call per request',
      bars,
      'x the throughput without batching (closed loop)',
      { markAt: 1 },
    );
    return [...sections, ...summary.map((s) => `- ${s}`), '', picture].join('\n');
  },
});
