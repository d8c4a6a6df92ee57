import { mnistHoldout } from '@mlserve/test-utils';
import { expect } from 'vitest';

/** The first held-out digits (the model classifies each of them right). */
export const DIGITS = 12;

/** A KServe V2 JSON request for held-out digit `i`. */
export function v2Request(i: number): string {
  const data = Array.from(mnistHoldout().image(i));
  return JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data }] });
}

export async function post(base: string, path: string, body: string): Promise<Response> {
  return fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
}

function argmax(values: number[]): number {
  return values.reduce((best, v, i) => (v > values[best]! ? i : best), 0);
}

/** The value of one Prometheus series, e.g. `nv_inference_count{model="mnist",version="1"}`. */
export function series(text: string, name: string, labels = 'model="mnist",version="1"'): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** What both example servers must do, checked over HTTP. */
export async function checkServing(base: string, framework: string): Promise<void> {
  // The app's own routes still work beside mlserve's.
  const hello = await fetch(`${base}/hello`);
  expect(hello.status).toBe(200);
  expect(await hello.json()).toEqual({ hello: `from ${framework}`, models: ['mnist'] });
  // The app's JSON body parser and mlserve's raw bodies live side by side.
  const named = await post(base, '/hello', '{"name":"Ada"}');
  expect(named.status).toBe(200);
  expect(await named.json()).toEqual({ hello: 'Ada' });

  // V2 metadata, from the worker pool's model through every layer.
  const meta = (await (await fetch(`${base}/v2/models/mnist`)).json()) as Record<string, unknown>;
  expect(meta).toMatchObject({
    name: 'mnist',
    versions: ['1'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 28, 28] }],
    outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
  });
  expect((await fetch(`${base}/v2/health/ready`)).status).toBe(200);

  // Held-out digits, all at once (they may share batches): each gets its own right answer.
  const labels = mnistHoldout().labels;
  const answers = await Promise.all(
    Array.from({ length: DIGITS }, async (_, i) => {
      const res = await post(base, '/v2/models/mnist/infer', v2Request(i));
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        model_name: string;
        outputs: Array<{ name: string; data: number[] }>;
      };
      expect(body.model_name).toBe('mnist');
      return argmax(body.outputs.find((o) => o.name === 'logits')!.data);
    }),
  );
  expect(answers).toEqual(labels.slice(0, DIGITS));

  // The same digit again comes from the response cache.
  const again = await post(base, '/v2/models/mnist/infer', v2Request(0));
  expect(again.status).toBe(200);

  // TF Serving REST reaches the same model, and the same cache: digit 1 was asked over V2 already.
  const predict = await post(
    base,
    '/v1/models/mnist:predict',
    JSON.stringify({ instances: [[chunk(Array.from(mnistHoldout().image(1)))]] }),
  );
  expect(predict.status).toBe(200);
  const { predictions } = (await predict.json()) as { predictions: number[][] };
  expect(argmax(predictions[0]!)).toBe(labels[1]);

  // Bad requests: a 400 with a JSON body naming the code, and the server keeps serving.
  const wrongType = await post(
    base,
    '/v2/models/mnist/infer',
    JSON.stringify({
      inputs: [{ name: 'image', datatype: 'FP64', shape: [1, 1, 28, 28], data: new Array(784).fill(0) }],
    }),
  );
  expect(wrongType.status).toBe(400);
  expect(wrongType.headers.get('content-type')).toMatch(/json/);
  const wrongBody = (await wrongType.json()) as { error: string; code: string };
  expect(wrongBody.code).toBe('INVALID_ARGUMENT');
  expect(wrongBody.error).toMatch(/expected float32\[-1,1,28,28\]/);
  const notJson = await post(base, '/v2/models/mnist/infer', '{"inputs": [');
  expect(notJson.status).toBe(400);
  expect(((await notJson.json()) as { code: string }).code).toBe('INVALID_ARGUMENT');
  const unknown = await post(base, '/v2/models/nope/infer', v2Request(0));
  expect(unknown.status).toBe(404);
  expect(((await unknown.json()) as { code: string }).code).toBe('NOT_FOUND');

  // /metrics counts what happened: the digits, the two cache hits, the failure by reason.
  const metrics = await fetch(`${base}/metrics`);
  expect(metrics.status).toBe(200);
  const text = await metrics.text();
  expect(series(text, 'nv_inference_request_success')).toBe(DIGITS + 2);
  expect(
    series(text, 'nv_inference_request_failure', 'model="mnist",version="1",reason="INVALID_ARGUMENT"'),
  ).toBe(1);
  expect(series(text, 'nv_cache_num_hits_per_model')).toBe(2);
  expect(series(text, 'nv_cache_num_misses_per_model')).toBe(DIGITS);
  // Batching: never more model runs than inferences that missed the cache.
  expect(series(text, 'nv_inference_exec_count')).toBeLessThanOrEqual(DIGITS);
  expect(series(text, 'nv_inference_pending_request_count')).toBe(0);
}

/** A flat 784-pixel image as TF Serving's nested [28][28] rows. */
function chunk(flat: number[]): number[][] {
  return Array.from({ length: 28 }, (_, r) => flat.slice(r * 28, r * 28 + 28));
}
