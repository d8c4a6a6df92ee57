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
/** The view of the scratch last hashed: requests of one shape hash the same length (no view per call). */
let scratchView: Buffer | undefined;

/**
 * The header of a scope's last request (name, version, every input's name, type, dims and byte
 * length; no outputs or parameters), kept as the bytes that are hashed: requests of one model
 * mostly share it, and rebuilding it is most of a small request's key.
 */
class HeaderMemo {
  readonly bytes: Buffer;
  readonly #types: string[];
  readonly #dims: number[][];
  readonly #lengths: number[];
  constructor(
    readonly name: string,
    readonly version: string,
    readonly order: readonly string[],
    readonly names: readonly string[],
    tensors: readonly Tensor[],
    header: string,
  ) {
    this.#types = tensors.map((t) => t.type);
    this.#dims = tensors.map((t) => [...t.dims]);
    this.#lengths = tensors.map((t) => (t.data as NumericTensorData).byteLength);
    const text = Buffer.from(header, 'utf8');
    this.bytes = Buffer.concat([text, SEPARATOR]);
  }
  /** Whether the i-th input (in sorted order) has the type, dims and byte length the header says. */
  matches(i: number, t: Tensor): boolean {
    if (t.type !== this.#types[i] || (t.data as NumericTensorData).byteLength !== this.#lengths[i])
      return false;
    const want = this.#dims[i]!;
    const dims = t.dims;
    if (dims.length !== want.length) return false;
    for (let d = 0; d < dims.length; d++) if (dims[d] !== want[d]) return false;
    return true;
  }
}

const headers = new WeakMap<KeyScope, HeaderMemo>();

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

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
  const order = Object.keys(inputs);
  const outputs = options?.outputs ? [...new Set(options.outputs)].sort() : null;
  const params = parametersKey(keptParameters(options?.parameters, scope.ignoreParameters));
  // The common case, requests shaped like the scope's last one: its header is reused as bytes.
  let memo = outputs === null && params === '' ? headers.get(scope) : undefined;
  if (memo !== undefined && (memo.name !== scope.name || memo.version !== scope.version)) memo = undefined;
  const names = memo !== undefined && sameNames(memo.order, order) ? memo.names : order.slice().sort();
  const tensors: Tensor[] = [];
  let hasStrings = false;
  let same = memo !== undefined && names === memo.names;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const t = inputs[name];
    assertTensor(t, `input "${name}"`);
    tensors.push(t);
    if (t.type === 'string') hasStrings = true;
    if (same && !memo!.matches(i, t)) same = false;
  }
  let header: string | undefined;
  let headerBytes: Buffer | undefined;
  if (same) headerBytes = memo!.bytes;
  else {
    const described: [string, string, readonly number[], number][] = [];
    for (let i = 0; i < names.length; i++) {
      const t = tensors[i]!;
      described.push([
        names[i]!,
        t.type,
        t.dims,
        t.type === 'string' ? -1 : (t.data as NumericTensorData).byteLength,
      ]);
    }
    header = JSON.stringify(['mlserve-cache/1', scope.name, scope.version, outputs, params, described]);
    if (outputs === null && params === '' && !hasStrings) {
      const made = new HeaderMemo(scope.name, scope.version, order, names, tensors, header);
      headers.set(scope, made);
      headerBytes = made.bytes;
    }
  }
  if (oneShot && !hasStrings) {
    // The same byte stream as below, so the same key; only the hashing call differs.
    let total = headerBytes ? headerBytes.byteLength : Buffer.byteLength(header!, 'utf8') + 1;
    for (const t of tensors) total += (t.data as NumericTensorData).byteLength;
    if (total <= SCRATCH_BYTES) {
      scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES);
      let at: number;
      if (headerBytes) {
        scratch.set(headerBytes, 0);
        at = headerBytes.byteLength;
      } else {
        at = scratch.write(header!, 0, 'utf8');
        scratch[at++] = 0;
      }
      for (const t of tensors) {
        const arr = t.data as NumericTensorData;
        scratch.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), at);
        at += arr.byteLength;
      }
      if (scratchView === undefined || scratchView.byteLength !== at) scratchView = scratch.subarray(0, at);
      return oneShot('sha256', scratchView, 'base64url');
    }
  }
  header ??= headerBytes!.toString('utf8', 0, headerBytes!.byteLength - 1);
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
