import * as crypto from 'node:crypto';
import {
  assertTensor,
  type InferOptions,
  invalidArgument,
  type NumericTensorData,
  type ParameterValue,
  parametersKey,
  type Tensor,
  type Tensors,
} from '@mlserve/core';

/** What a cache key is made of, besides the inputs. */
export interface KeyScope {
  /** Model name. */
  name: string;
  /** Model version. */
  version: string;
  /** Parameter names that never change the answer (a request id, a trace flag); left out of the key. */
  ignoreParameters?: ReadonlySet<string>;
}

const SEPARATOR = Buffer.from([0]);

/** One-shot SHA-256 (Node >= 20.12); undefined on older Node, which streams every key. */
const oneShot: ((algorithm: string, data: Uint8Array, encoding: 'base64url') => string) | undefined =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (crypto.hash as (algorithm: string, data: Uint8Array, encoding: 'base64url') => string)
    : undefined;
/** Small requests are laid out here and hashed in one call (a Hash object costs more than the copy). */
const SCRATCH_BYTES = 4096;
let scratch: Buffer | undefined;

/**
 * The cache key of a request: a SHA-256 digest (base64url, 43 characters) of the model name and
 * version, the requested outputs (sorted, deduplicated), the parameters that can change the answer
 * (core's `parametersKey`, minus `ignoreParameters`) and every input's name, type, dims and raw
 * bytes. The inputs are fed to the hash in place (no copy). String tensors are length-prefixed per
 * element, so `['ab', 'c']` and `['a', 'bc']` get different keys.
 *
 * Throws INVALID_ARGUMENT for inputs that are not well-formed tensors.
 *
 * @example
 * ```ts
 * const key = cacheKey({ name: 'mnist', version: '1' }, { image }, { outputs: ['logits'] });
 * ```
 */
export function cacheKey(scope: KeyScope, inputs: Tensors, options?: InferOptions): string {
  if (typeof inputs !== 'object' || inputs === null || Array.isArray(inputs)) {
    throw invalidArgument('inputs must be a record of named tensors');
  }
  const names = Object.keys(inputs).sort();
  const described: [string, string, readonly number[], number][] = [];
  const tensors: Tensor[] = [];
  let hasStrings = false;
  for (const name of names) {
    const t = inputs[name];
    assertTensor(t, `input "${name}"`);
    tensors.push(t);
    if (t.type === 'string') hasStrings = true;
    described.push([
      name,
      t.type,
      t.dims,
      t.type === 'string' ? -1 : (t.data as NumericTensorData).byteLength,
    ]);
  }
  const outputs = options?.outputs ? [...new Set(options.outputs)].sort() : null;
  const header = JSON.stringify([
    'mlserve-cache/1',
    scope.name,
    scope.version,
    outputs,
    parametersKey(keptParameters(options?.parameters, scope.ignoreParameters)),
    described,
  ]);
  if (oneShot && !hasStrings) {
    // The same byte stream as below, so the same key; only the hashing call differs.
    let total = Buffer.byteLength(header, 'utf8') + 1;
    for (const t of tensors) total += (t.data as NumericTensorData).byteLength;
    if (total <= SCRATCH_BYTES) {
      scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES);
      let at = scratch.write(header, 0, 'utf8');
      scratch[at++] = 0;
      for (const t of tensors) {
        const arr = t.data as NumericTensorData;
        scratch.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), at);
        at += arr.byteLength;
      }
      return oneShot('sha256', scratch.subarray(0, at), 'base64url');
    }
  }
  const hash = crypto.createHash('sha256');
  hash.update(header);
  hash.update(SEPARATOR);
  // The header is self-delimiting JSON and carries every numeric input's byte length, so the
  // byte stream that follows parses one way only.
  const prefix = Buffer.allocUnsafe(5);
  for (const t of tensors) {
    if (t.type === 'string') {
      for (const el of t.data as (string | Uint8Array)[]) {
        const bytes = typeof el === 'string' ? Buffer.from(el, 'utf8') : el;
        prefix[0] = typeof el === 'string' ? 0 : 1;
        prefix.writeUInt32LE(bytes.byteLength, 1);
        hash.update(prefix);
        hash.update(bytes);
      }
    } else {
      const arr = t.data as NumericTensorData;
      hash.update(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
    }
  }
  return hash.digest('base64url');
}

function keptParameters(
  parameters: Record<string, ParameterValue> | undefined,
  ignore: ReadonlySet<string> | undefined,
): Record<string, ParameterValue> | undefined {
  if (!parameters || !ignore || ignore.size === 0) return parameters;
  let kept: Record<string, ParameterValue> | undefined;
  for (const k of Object.keys(parameters)) {
    if (ignore.has(k)) continue;
    kept ??= {};
    kept[k] = parameters[k]!;
  }
  return kept;
}
