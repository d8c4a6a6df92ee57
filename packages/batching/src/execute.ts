import {
  cloneTensor,
  concat,
  internal,
  type NumericTensorData,
  type Tensor,
  type Tensors,
  TYPED_ARRAY,
} from '@mlserve/core';
import type { Plan } from './plan.js';
import type { Entry } from './queue.js';
import { concatPadded, sliceTrimmed } from './tensors.js';

/**
 * Execution's data work: the batch's inputs joined along dim 0 (padded where lengths differ), the
 * model's outputs checked and cut back into each request's rows. Validated requests only: shapes
 * after dim 0 agree except where the plan pads.
 */

/** The joined inputs of a batch, and the padded length of each padded dim (when padding happened). */
export interface MergedInputs {
  inputs: Tensors;
  padded: Record<string, number> | undefined;
}

/** Below this many elements a copy loops instead of calling set() / slice(). */
const SMALL = 64;

/** Joins equal-shaped tensors along dim 0 (the shapes were validated: no checks here). */
function join(parts: readonly Tensor[]): Tensor {
  if (parts.length === 1) return parts[0]!;
  const first = parts[0]!;
  if (first.type === 'string') return concat(parts);
  let rows = 0;
  let total = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    rows += p.dims[0]!;
    total += p.data.length;
  }
  const out = new TYPED_ARRAY[first.type](total) as Float32Array;
  let offset = 0;
  for (let i = 0; i < parts.length; i++) {
    const d = parts[i]!.data as Float32Array;
    const len = d.length;
    // Small rows copy faster element by element than through set()'s per-call overhead.
    if (len <= SMALL) for (let k = 0; k < len; k++) out[offset + k] = d[k]!;
    else out.set(d, offset);
    offset += len;
  }
  const dims = first.dims.slice();
  dims[0] = rows;
  return { type: first.type, dims, data: out as NumericTensorData } as Tensor;
}

export function mergeInputs(plan: Plan, batch: readonly Entry[]): MergedInputs {
  const inputs: Tensors = {};
  let padded: Record<string, number> | undefined;
  const n = batch.length;
  for (const info of plan.batchedInputs) {
    const parts: Tensor[] = new Array(n);
    for (let i = 0; i < n; i++) parts[i] = batch[i]!.inputs[info.name]!;
    const v = plan.padded.get(info.name);
    if (v) {
      const t = concatPadded(parts, v.pad);
      inputs[info.name] = t;
      for (const d of v.dims) {
        for (const p of parts) {
          if (p.dims[d] !== t.dims[d]) {
            padded ??= {};
            padded[`${info.name}[${d}]`] = t.dims[d]!;
            break;
          }
        }
      }
    } else inputs[info.name] = join(parts);
  }
  for (const info of plan.unbatchedInputs) inputs[info.name] = batch[0]!.inputs[info.name]!;
  return { inputs, padded };
}

/** Throws INTERNAL when a batched output does not have one row per item. */
export function checkRows(plan: Plan, out: Tensors, items: number): void {
  for (const name in out) {
    const t = out[name]!;
    if (t.dims[0] !== items && !plan.unbatchedOutputs.has(name)) {
      throw internal(`output "${name}" has ${t.dims[0] ?? 'no'} rows for a batch of ${items}`);
    }
  }
}

/** Rows `start` to `end` as a copy (core's sliceRows without the checks: the bounds are ours). */
function rowsOf(t: Tensor, start: number, end: number): Tensor {
  const src = t.data as Float32Array;
  const per = src.length / t.dims[0]!;
  const dims = t.dims.slice();
  dims[0] = end - start;
  const from = start * per;
  const len = (end - start) * per;
  if (len > SMALL || t.type === 'string')
    return { type: t.type, dims, data: src.slice(from, from + len) } as Tensor;
  const data = new TYPED_ARRAY[t.type](len) as Float32Array;
  for (let k = 0; k < len; k++) data[k] = src[from + k]!;
  return { type: t.type, dims, data } as Tensor;
}

/**
 * One request's share of the outputs: rows `start` to `end` of each output it asked for (unbatched
 * outputs whole), padding cut back to its own lengths. `alone`: the batch held only this request,
 * so its outputs are handed over without copies.
 */
export function share(
  plan: Plan,
  out: Tensors,
  names: readonly string[],
  e: Entry,
  start: number,
  end: number,
  alone: boolean,
  padded: boolean,
): Tensors {
  const result: Tensors = {};
  const wanted = e.options?.outputs ?? names;
  for (let i = 0; i < wanted.length; i++) {
    const name = wanted[i]!;
    const t = out[name];
    if (!t) continue;
    if (alone) {
      result[name] = t;
      continue;
    }
    if (plan.unbatchedOutputs.has(name)) {
      result[name] = cloneTensor(t);
      continue;
    }
    const trims = padded ? plan.trims.get(name) : undefined;
    if (trims) {
      const limits: number[] = [];
      for (const tr of trims) limits[tr.dim] = e.inputs[tr.input]?.dims[tr.inputDim] ?? t.dims[tr.dim]!;
      result[name] = sliceTrimmed(t, start, end, limits);
    } else result[name] = rowsOf(t, start, end);
  }
  return result;
}
