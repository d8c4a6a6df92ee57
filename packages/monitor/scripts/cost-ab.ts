/**
 * The monitor's CPU cost per request on mnist-cnn, measured as a paired A/B on a shared machine:
 * one child process serves every configuration (each its own pipeline over one onnxruntime
 * session), one short window at a time, rounds interleaved and the order rotated each round. A
 * window is `--ms` of requests then `--settle` ms idle; its CPU is the process's (process.cpuUsage,
 * garbage collection threads included) over both, so that what a configuration leaves behind (a
 * drain of sampled requests, an evaluation) counts against it. Each round gives a ratio to the bare
 * model's CPU per request in the same round; the median and quartiles of those ratios are printed,
 * with the load average and the main thread's garbage-collection pauses per request.
 *
 *   npx tsx packages/monitor/scripts/cost-ab.ts [--rounds 60] [--ms 250] [--settle 20] [--callers 1]
 *     [--configs bare,fed] [--old /path/to/old/monitor/dist/index.js] [--prof DIR]
 *
 * Configurations: `bare` (mnist-cnn alone; `bare2`... a second one, a control for the noise),
 * `auto` (monitor at its defaults), `fed` (defaults plus feedback: every request with an id, its
 * label sent 64 requests later, the join in 'auto'), `rate0` / `rate0fb` (no request measured,
 * without and with feedback), `all` (every request measured), `rate0skip` (the
 * join's sample empty: ids hashed, labels checked and skipped), `j<N>` (nothing measured, the join
 * fixed at N% of the ids), `fixed` (1% measured, 30% joined), and any of them with `-old` for the
 * monitor build named by `--old` (an old-against-new comparison). Every
 * configuration gives each request an id and makes each label's id (the label's side, as a
 * transport hands it over); only those with feedback join it. `--prof DIR` writes a V8 CPU profile.
 */
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : dflt;
};

interface Window {
  cpuUs: number;
  requests: number;
  /** Garbage collection pauses on the main thread, us per request, and their number. */
  gcUs: number;
  gcs: number;
  stats?: unknown;
}

const LATE = 64;

/** Builds one configuration's pipeline: the served model and the call that drives it. */
async function setup(config: string, oldPath: string, model: import('@mlserve/core').Model) {
  const { pipeline } = await import('@mlserve/core');
  const fresh = await import('@mlserve/monitor');
  const lib: typeof fresh = config.endsWith('-old') ? await import(oldPath) : fresh;
  const { mnistHoldout } = await import('@mlserve/test-utils');
  const holdout = mnistHoldout();
  const images = Array.from({ length: holdout.count }, (_, i) => ({
    image: { type: 'float32' as const, dims: [1, 1, 28, 28], data: holdout.image(i) },
  }));
  const extractors = [
    lib.imageStats('image'),
    lib.predictedClass('logits'),
    lib.topScore('logits', { softmax: true }),
  ];
  const ref = await lib.profile(
    images.map((inputs) => ({ inputs })),
    { extractors, model },
  );
  ref.baseline = await lib.measureBaseline(
    images.map((inputs, i) => ({ inputs, label: holdout.labels[i]! })),
    { model, output: 'logits' },
  );
  const kind = config.replace(/-old$/, '').replace(/^bare\d+$/, 'bare');
  const watch =
    kind === 'bare'
      ? undefined
      : lib.monitor({
          profile: ref,
          extractors,
          ...(kind === 'all' ? { sampleRate: 1, maxPending: 1024 } : {}),
          ...(kind.startsWith('rate0') ? { sampleRate: 0 } : {}),
          ...(kind === 'fed' || kind === 'rate0fb' ? { feedback: {} } : {}),
          ...(kind === 'rate0skip' ? { feedback: { sampleRate: 0 } } : {}),
          ...(/^j\d+$/.test(kind)
            ? { sampleRate: 0, feedback: { sampleRate: Number(kind.slice(1)) / 100 } }
            : {}),
          ...(kind === 'fixed' ? { sampleRate: 0.01, feedback: { sampleRate: 0.3 } } : {}),
        });
  const served = watch ? pipeline(model, watch) : pipeline(model);
  const fed =
    kind === 'fed' || kind === 'rate0fb' || kind === 'rate0skip' || kind === 'fixed' || /^j\d+$/.test(kind)
      ? watch
      : undefined;
  let n = 0;
  let labelSide = 0;
  const one = async () => {
    const i = n++;
    const out = await served.infer(images[i % images.length]!, { id: `r${i}` });
    if (i >= LATE) {
      // The label's side (its id and value, as a transport would hand them over) in every
      // configuration; only those with feedback join it.
      const id = `r${i - LATE}`;
      const label = holdout.labels[(i - LATE) % images.length]!;
      if (fed) fed.feedback(id, label);
      else labelSide += id.length + label;
    }
    return out;
  };
  return { one, watch, labelSide: () => labelSide };
}

/**
 * Serves the configurations named, one window at a time as the parent asks: requests for `ms`,
 * then `settle` ms idle, the process's CPU over both (what a configuration leaves to run after
 * its requests, a drain of sampled requests or an evaluation, counts against it).
 */
async function child(configs: string[], oldPath: string): Promise<void> {
  const { mnistHoldout, modelPath } = await import('@mlserve/test-utils');
  const { loadOnnxModel } = await import('@mlserve/backend-onnx');
  mnistHoldout();
  const model = await loadOnnxModel(modelPath('mnist-cnn.onnx'), {
    name: 'mnist',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const set = new Map<string, Awaited<ReturnType<typeof setup>>>();
  for (const c of configs) set.set(c, await setup(c, oldPath, model));
  const loop = async (one: () => Promise<unknown>, ms: number, callers: number) => {
    const until = performance.now() + ms;
    let requests = 0;
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (performance.now() < until) {
          await one();
          requests++;
        }
      }),
    );
    return requests;
  };
  // Garbage collection seen from the main thread (pauses), per window.
  const { PerformanceObserver } = await import('node:perf_hooks');
  const gc = { count: 0, ms: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.count++;
      gc.ms += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  // Run-in: JIT, and 'auto' settled at its steady rate.
  for (const { one } of set.values()) await loop(one, 1500, 1);
  process.on(
    'message',
    async (m: { config: string; ms: number; callers: number; settle: number } | 'exit') => {
      if (m === 'exit') {
        process.disconnect();
        for (const { watch } of set.values()) await watch?.flush();
        await model.dispose();
        return;
      }
      const { one, watch } = set.get(m.config)!;
      const c0 = process.cpuUsage();
      const g0 = { ...gc };
      const requests = await loop(one, m.ms, m.callers);
      await new Promise((r) => setTimeout(r, m.settle));
      const c = process.cpuUsage(c0);
      const gcUs = ((gc.ms - g0.ms) * 1000) / requests;
      const gcs = gc.count - g0.count;
      const s = watch?.stats();
      const w: Window = {
        cpuUs: c.user + c.system,
        requests,
        gcUs,
        gcs,
        stats: s && {
          sampleRate: s.sampleRate,
          sampled: s.sampled,
          requests: s.requests,
          busyMs: s.busyMs,
          ...(s.feedback
            ? { joinRate: s.feedback.sampleRate, joined: s.feedback.joined, skipped: s.feedback.skipped }
            : {}),
        },
      };
      process.send!(w);
    },
  );
  process.send!('ready');
}

async function parent(): Promise<void> {
  const rounds = Number(arg('rounds', '60'));
  const ms = Number(arg('ms', '250'));
  const settle = Number(arg('settle', '20'));
  const callers = Number(arg('callers', '1'));
  const configs = arg('configs', 'bare,fed').split(',');
  const oldPath = arg('old', '');
  const prof = arg('prof', '');
  if (configs[0] !== 'bare') throw new Error('the first configuration must be bare (the baseline)');
  // One process for all: no process-to-process differences (of memory layout, of which core
  // it lands on) in the ratios, which at a load of 20-30 on 2 cores were +-6% between two bare ones.
  const host = fork(new URL(import.meta.url).pathname, ['--child', configs.join(','), '--old', oldPath], {
    execArgv: [...process.execArgv, ...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [])],
  });
  const children = configs.map(() => host);
  const next = (i: number) =>
    new Promise<unknown>((resolve, reject) => {
      const fail = (err: Error) => reject(err);
      children[i]!.once('error', fail);
      children[i]!.once('message', (m) => {
        children[i]!.off('error', fail);
        resolve(m);
      });
    });
  await next(0);
  const load0 = loadavg();
  const perReq: number[][] = configs.map(() => []);
  const totals = configs.map(() => ({ cpuUs: 0, requests: 0, gcUs: 0, gcs: 0 }));
  const stats: unknown[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < configs.length; k++) {
      const i = (k + r) % configs.length;
      const done = next(i);
      children[i]!.send({ config: configs[i]!, ms, callers, settle });
      const w = (await done) as Window;
      perReq[i]!.push(w.cpuUs / w.requests);
      totals[i]!.cpuUs += w.cpuUs;
      totals[i]!.requests += w.requests;
      totals[i]!.gcUs += w.gcUs * w.requests;
      totals[i]!.gcs += w.gcs;
      stats[i] = w.stats;
    }
  }
  const load1 = loadavg();
  host.send('exit');
  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  };
  const f = (x: number, d = 3) => x.toFixed(d);
  console.log(
    `${rounds} rounds of ${ms} ms, ${callers} caller(s); load ${load0.map((x) => x.toFixed(1)).join(' ')} -> ${load1.map((x) => x.toFixed(1)).join(' ')}`,
  );
  for (let i = 0; i < configs.length; i++) {
    const ratios = perReq[i]!.map((v, r) => v / perReq[0]![r]!);
    const t = totals[i]!;
    console.log(
      `${configs[i]!.padEnd(8)} CPU/req median ${f(q(perReq[i]!, 0.5), 2)} us (${t.requests} req; ` +
        `GC pauses ${f(t.gcUs / t.requests)} us/req, ${f((t.gcs * 1000) / t.requests, 2)} per 1000 req); ` +
        (i === 0
          ? 'baseline'
          : `x bare: median ${f(q(ratios, 0.5))} [q1 ${f(q(ratios, 0.25))}, q3 ${f(q(ratios, 0.75))}], ` +
            `totals ${f(t.cpuUs / t.requests / (totals[0]!.cpuUs / totals[0]!.requests))}`) +
        (stats[i] ? ` ${JSON.stringify(stats[i])}` : ''),
    );
  }
}

const c = args.indexOf('--child');
if (c >= 0) await child(args[c + 1]!.split(','), arg('old', ''));
else await parent();
