/**
 * Property-based fuzzing (fast-check) of the decoders that see client bytes first (@mlserve/http's
 * V2 JSON and binary decoders, the TF Serving decoder) and of core's tensor helpers: whatever they
 * are given, they return or throw a ServeError, and every call ends quickly.
 */
import {
  assertTensor,
  cloneTensor,
  concat,
  type DataType,
  elementCount,
  isServeError,
  type ModelMetadata,
  sliceRows,
  split,
  type Tensor,
  tensor,
  tensorsEqual,
  validateRequest,
} from '@mlserve/core';
import { decodePredict } from '@mlserve/http';
import { decodeV2Request, parseHeaderLength, splitLengthPrefixed } from '@mlserve/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { check } from './helpers.js';

const AREA = 'Fuzzing';
const RUNS = 500;
/** A single call slower than this counts as a hang (generous: the machine is shared). */
const HANG_MS = 2_000;

interface Tally {
  ok: number;
  rejected: number;
  slowestMs: number;
  codes: Set<string>;
}

/** Runs `fn`, counting success or a ServeError; anything else (or a slow call) fails the property. */
function guarded(tally: Tally, fn: () => unknown): void {
  const t0 = performance.now();
  let failure: Error | undefined;
  try {
    fn();
    tally.ok++;
  } catch (err) {
    if (isServeError(err)) {
      tally.rejected++;
      tally.codes.add(err.code);
    } else {
      failure = new Error(
        `threw a non-ServeError: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
      );
    }
  }
  const ms = performance.now() - t0;
  tally.slowestMs = Math.max(tally.slowestMs, ms);
  if (failure) throw failure;
  if (ms > HANG_MS) throw new Error(`a call took ${ms.toFixed(0)} ms`);
}

const newTally = (): Tally => ({ ok: 0, rejected: 0, slowestMs: 0, codes: new Set() });
const describeTally = (t: Tally) =>
  `${t.ok + t.rejected} runs: ${t.ok} decoded, ${t.rejected} ServeError (${[...t.codes].join(', ') || 'none'}); no other throw; slowest call ${t.slowestMs.toFixed(1)} ms`;

const V2_TYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
];
const CORE_TYPES: DataType[] = [
  'bool',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'int8',
  'int16',
  'int32',
  'int64',
  'float16',
  'float32',
  'float64',
  'string',
];

const dim = fc.oneof(
  fc.integer({ min: -2, max: 6 }),
  fc.constantFrom(0, 1e9, 2 ** 53, -0, 0.5, Number.MAX_SAFE_INTEGER),
  fc.double(),
  fc.string({ maxLength: 3 }),
);
const scalar = fc.oneof(
  fc.integer({ min: -300, max: 300 }),
  fc.double(),
  fc.boolean(),
  fc.string({ maxLength: 4 }),
  fc.constant(null),
  fc.constantFrom(2 ** 63, -(2 ** 64), 1e300),
);
const { nested } = fc.letrec((tie) => ({
  nested: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('nested'), { maxLength: 6 }),
  ),
}));
const name = fc.oneof(
  fc.constantFrom('image', '__proto__', 'constructor', 'toString', '', 'text'),
  fc.string({ maxLength: 8 }),
);
const params = fc.option(
  fc.dictionary(
    fc.oneof(
      name,
      fc.constantFrom(
        'binary_data_size',
        'timeout',
        'priority',
        'sequence_id',
        'classification',
        'binary_data',
      ),
    ),
    fc.oneof(scalar, fc.jsonValue({ maxDepth: 2 })),
  ),
  { nil: undefined },
);
/** Requests close to valid: known types, small shapes, data of about the right length. */
const nearValidInput = fc
  .tuple(
    fc.constantFrom(...V2_TYPES),
    fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
    fc.integer({ min: -1, max: 1 }),
    scalar,
  )
  .map(([datatype, shape, off, el]) => {
    const n = Math.max(0, shape.reduce((a, b) => a * b, 1) + off);
    return { name: 'x', datatype, shape, data: new Array(n).fill(el) };
  });

const v2Input = fc.record(
  {
    name: fc.oneof(name, fc.anything({ maxDepth: 1 })),
    datatype: fc.oneof(fc.constantFrom(...V2_TYPES, 'BF16', 'FP128', 'fp32'), fc.anything({ maxDepth: 1 })),
    shape: fc.oneof(fc.array(dim, { maxLength: 5 }), fc.anything({ maxDepth: 1 })),
    data: nested,
    parameters: params,
  },
  { requiredKeys: [] },
);
const v2Request = fc.record(
  {
    id: fc.oneof(fc.string({ maxLength: 8 }), fc.anything({ maxDepth: 1 })),
    inputs: fc.oneof(
      fc.array(v2Input, { maxLength: 4 }),
      fc.array(nearValidInput, { maxLength: 2 }),
      fc.anything({ maxDepth: 1 }),
    ),
    outputs: fc.oneof(
      fc.array(fc.record({ name, parameters: params }, { requiredKeys: [] }), { maxLength: 3 }),
      fc.anything({ maxDepth: 1 }),
    ),
    parameters: params,
  },
  { requiredKeys: [] },
);

const MNIST: ModelMetadata = {
  name: 'mnist',
  version: '1',
  platform: 'onnxruntime_onnx',
  inputs: [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28], batched: true }],
  outputs: [{ name: 'logits', type: 'float32', dims: [-1, 10], batched: true }],
  maxBatchSize: 64,
  concurrency: 1,
};

/** A small well-formed tensor of any type. */
const goodTensor: fc.Arbitrary<Tensor> = fc
  .tuple(
    fc.constantFrom(...CORE_TYPES),
    fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 3 }),
  )
  .map(([type, dims]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    if (type === 'string')
      return { type, dims, data: Array.from({ length: n }, (_, i) => `s${i}`) } as Tensor;
    const data: (number | bigint)[] = Array.from({ length: n }, (_, i) =>
      type === 'int64' || type === 'uint64' ? BigInt(i % 2) : i % 2,
    );
    return tensor(type, data as never, dims);
  });

/** What a helper returns must be a valid tensor: a malformed one is a bug, not a rejection. */
function wellFormed(t: Tensor, what: string): void {
  try {
    assertTensor(t);
  } catch (err) {
    throw new Error(`${what} returned a malformed tensor: ${(err as Error).message}`);
  }
}

describe('fuzzing', () => {
  it('decodeV2Request on JSON built from V2-shaped pieces', async () => {
    const t = newTally();
    await check(
      {
        area: AREA,
        name: 'V2 JSON decoder, V2-shaped requests',
        adapter: '-',
        sent: `${RUNS} random requests (hostile names, types, shapes, nested data, parameters), then validateRequest against mnist`,
      },
      (row) => {
        fc.assert(
          fc.property(v2Request, (req) => {
            guarded(t, () => {
              const decoded = decodeV2Request(Buffer.from(JSON.stringify(req) ?? 'null'));
              for (const [k, v] of Object.entries(decoded.inputs)) wellFormed(v, `input ${k}`);
              try {
                validateRequest(MNIST, decoded.inputs, {});
              } catch (err) {
                if (!isServeError(err)) throw err;
              }
            });
          }),
          { numRuns: RUNS },
        );
        row.got = describeTally(t);
        expect(t.ok + t.rejected).toBe(RUNS);
      },
    );
  });

  it('decodeV2Request on arbitrary bytes and arbitrary JSON', async () => {
    const t = newTally();
    await check(
      {
        area: AREA,
        name: 'V2 JSON decoder, arbitrary bytes and JSON',
        adapter: '-',
        sent: `${RUNS} byte strings (random, or JSON values, or valid requests with bytes flipped)`,
      },
      (row) => {
        const valid = Buffer.from(
          JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [2], data: [1, 2] }] }),
        );
        fc.assert(
          fc.property(
            fc.oneof(
              fc.uint8Array({ maxLength: 256 }),
              fc.jsonValue().map((v) => new TextEncoder().encode(JSON.stringify(v))),
              fc
                .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 })
                .map((flips) => {
                  const b = Buffer.from(valid);
                  for (const [i, v] of flips) b[i] = v;
                  return b;
                }),
            ),
            (bytes) => guarded(t, () => decodeV2Request(bytes)),
          ),
          { numRuns: RUNS },
        );
        row.got = describeTally(t);
        expect(t.ok + t.rejected).toBe(RUNS);
      },
    );
  });

  it('decodeV2Request on binary requests (header length, sizes and tails at random)', async () => {
    const t = newTally();
    await check(
      {
        area: AREA,
        name: 'V2 binary decoder',
        adapter: '-',
        sent: `${RUNS} binary bodies: V2 headers with random binary_data_size, random tails (BYTES prefixes included), random header lengths`,
      },
      (row) => {
        const binInput = fc.record({
          name: fc.constantFrom('a', 'b', 'text', '__proto__'),
          datatype: fc.constantFrom(...V2_TYPES, 'BF16'),
          shape: fc.array(fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constantFrom(1e9, -1)), {
            maxLength: 3,
          }),
          parameters: fc.record({
            binary_data_size: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constantFrom(-1, 1e12, 0.5)),
          }),
        });
        fc.assert(
          fc.property(
            fc.array(binInput, { maxLength: 3 }),
            fc.uint8Array({ maxLength: 64 }),
            fc.oneof(fc.constant(undefined), fc.integer({ min: -4, max: 400 })),
            (inputs, tail, headerDelta) => {
              const header = Buffer.from(JSON.stringify({ inputs }));
              const body = Buffer.concat([header, tail]);
              const declared = headerDelta === undefined ? header.byteLength : headerDelta;
              guarded(t, () => decodeV2Request(body, parseHeaderLength(String(declared), body.byteLength)));
            },
          ),
          { numRuns: RUNS },
        );
        row.got = describeTally(t);
        expect(t.ok + t.rejected).toBe(RUNS);
      },
    );
  });

  it('parseHeaderLength and splitLengthPrefixed on anything', async () => {
    const t = newTally();
    await check(
      {
        area: AREA,
        name: 'binary header length and BYTES length prefixes',
        adapter: '-',
        sent: `${RUNS} header strings and ${RUNS} (bytes, count) pairs`,
      },
      (row) => {
        fc.assert(
          fc.property(fc.string({ maxLength: 24 }), fc.nat(), (s, len) =>
            guarded(t, () => parseHeaderLength(s, len)),
          ),
          { numRuns: RUNS },
        );
        fc.assert(
          fc.property(
            fc.uint8Array({ maxLength: 64 }),
            fc.oneof(fc.nat(20), fc.constantFrom(1e9, 2 ** 40)),
            (bytes, count) => guarded(t, () => splitLengthPrefixed(bytes, count, 'input')),
          ),
          { numRuns: RUNS },
        );
        row.got = describeTally(t);
        expect(t.ok + t.rejected).toBe(2 * RUNS);
      },
    );
  });

  it('decodePredict (TF Serving) on arbitrary JSON', async () => {
    const t = newTally();
    await check(
      {
        area: AREA,
        name: 'TF Serving predict decoder',
        adapter: '-',
        sent: `${RUNS} bodies: random JSON and {instances|inputs} of nested data, for mnist's metadata`,
      },
      (row) => {
        fc.assert(
          fc.property(
            fc.oneof(
              fc.jsonValue({ maxDepth: 3 }),
              fc.record({ instances: nested }, { requiredKeys: [] }),
              fc.record({ inputs: fc.oneof(nested, fc.dictionary(name, nested)) }, { requiredKeys: [] }),
              fc.record({
                instances: fc.array(
                  fc.record({ image: nested, b64: fc.anything({ maxDepth: 1 }) }, { requiredKeys: [] }),
                  { maxLength: 3 },
                ),
              }),
            ),
            (body) => guarded(t, () => decodePredict(body, MNIST)),
          ),
          { numRuns: RUNS },
        );
        row.got = describeTally(t);
        expect(t.ok + t.rejected).toBe(RUNS);
      },
    );
  });

  it("core's tensor helpers on anything", async () => {
    const t = newTally();
    await check(
      {
        area: AREA,
        name: 'core tensor helpers',
        adapter: '-',
        sent: `${RUNS} runs each of tensor(), assertTensor(), elementCount() on arbitrary values, and concat/sliceRows/split/cloneTensor/tensorsEqual on random tensors and arguments`,
      },
      (row) => {
        fc.assert(
          fc.property(
            fc.oneof(fc.constantFrom(...CORE_TYPES), fc.anything({ maxDepth: 0 })),
            nested,
            fc.option(fc.array(dim, { maxLength: 4 }), { nil: undefined }),
            (type, data, dims) =>
              guarded(t, () => tensor(type as DataType, data as never, dims as number[] | undefined)),
          ),
          { numRuns: RUNS },
        );
        fc.assert(
          fc.property(
            fc.oneof(
              fc.anything({ maxDepth: 2 }),
              fc.record({
                type: fc.constantFrom(...CORE_TYPES, 'float128'),
                dims: fc.array(dim, { maxLength: 3 }),
                data: fc.oneof(nested, fc.constant(new Float32Array(4)), fc.constant([new Uint8Array(1)])),
              }),
            ),
            (v) => guarded(t, () => assertTensor(v)),
          ),
          { numRuns: RUNS },
        );
        fc.assert(
          fc.property(fc.array(fc.oneof(dim, fc.anything({ maxDepth: 0 })), { maxLength: 6 }), (dims) =>
            guarded(t, () => elementCount(dims)),
          ),
          { numRuns: RUNS },
        );
        const index = fc.oneof(
          fc.integer({ min: -2, max: 6 }),
          fc.double(),
          fc.constantFrom(Number.NaN, 1e9),
        );
        fc.assert(
          fc.property(
            fc.array(goodTensor, { minLength: 0, maxLength: 3 }),
            index,
            index,
            fc.array(index, { maxLength: 4 }),
            (ts, a, b, sizes) => {
              guarded(t, () => concat(ts));
              const first = ts[0];
              if (!first) return;
              guarded(t, () => wellFormed(sliceRows(first, a, b), `sliceRows(${a}, ${b})`));
              guarded(t, () => {
                for (const part of split(first, sizes)) wellFormed(part, `split([${sizes}])`);
              });
              guarded(t, () => {
                const c = cloneTensor(first);
                if (!tensorsEqual(c, first)) throw new Error('cloneTensor changed the tensor');
              });
            },
          ),
          { numRuns: RUNS },
        );
        row.got = describeTally(t);
        expect(t.ok + t.rejected).toBeGreaterThanOrEqual(3 * RUNS);
      },
    );
  });
});
