import { invalidArgument, type NumericTensorData, sliceRows, type Tensor, TYPED_ARRAY } from '@mlserve/core';

/**
 * Tensor helpers the batcher needs beyond core's `concat` / `sliceRows`: joining rows of different
 * lengths with padding, and cutting padding back off. Kept local to this package (core offers only
 * the equal-shape cases).
 */

type Buf = { [i: number]: unknown; length: number };

/** Element strides of a row-major shape. */
function strides(dims: readonly number[]): number[] {
  const out = new Array<number>(dims.length);
  let s = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    out[d] = s;
    s *= dims[d]!;
  }
  return out;
}

/**
 * Copies `rows` rows of `src` (starting at `srcRow`) into `dst` (starting at `dstRow`), copying only
 * `extent[d]` elements along each dim d >= 1. Shapes may differ after dim 0: that is padding (dst larger)
 * or trimming (dst smaller).
 */
function copyRegion(
  src: Buf,
  srcDims: readonly number[],
  srcRow: number,
  dst: Buf,
  dstDims: readonly number[],
  dstRow: number,
  rows: number,
  extent: readonly number[],
): void {
  const rank = srcDims.length;
  const ss = strides(srcDims);
  const ds = strides(dstDims);
  const run = rank <= 1 ? 1 : extent[rank - 1]!;
  const typed = ArrayBuffer.isView(src) && ArrayBuffer.isView(dst);
  // Multi-index over dims 0..rank-2 (dim 0 counts rows).
  const outer = rank <= 1 ? 1 : rank - 1;
  const idx = new Array<number>(outer).fill(0);
  const limit = new Array<number>(outer);
  limit[0] = rows;
  for (let d = 1; d < outer; d++) limit[d] = extent[d]!;
  for (let d = 0; d < outer; d++) if (limit[d] === 0) return;
  if (run === 0) return;
  for (;;) {
    let so = (srcRow + idx[0]!) * ss[0]!;
    let doff = (dstRow + idx[0]!) * ds[0]!;
    for (let d = 1; d < outer; d++) {
      so += idx[d]! * ss[d]!;
      doff += idx[d]! * ds[d]!;
    }
    if (typed && run > 16) {
      (dst as Float32Array).set((src as Float32Array).subarray(so, so + run), doff);
    } else {
      for (let i = 0; i < run; i++) dst[doff + i] = src[so + i];
    }
    let d = outer - 1;
    while (d >= 0) {
      idx[d]!++;
      if (idx[d]! < limit[d]!) break;
      idx[d] = 0;
      d--;
    }
    if (d < 0) return;
  }
}

/**
 * Joins tensors along dim 0, padding each to the largest size along every other dim with `padValue`.
 * Tensors whose shapes already agree after dim 0 are joined without padding.
 */
export function concatPadded(tensors: readonly Tensor[], padValue: number | bigint | undefined): Tensor {
  const first = tensors[0]!;
  const rank = first.dims.length;
  const target = first.dims.slice();
  let rows = 0;
  let ragged = false;
  for (const t of tensors) {
    rows += t.dims[0]!;
    for (let d = 1; d < rank; d++) {
      if (t.dims[d] !== target[d]) {
        ragged = true;
        if (t.dims[d]! > target[d]!) target[d] = t.dims[d]!;
      }
    }
  }
  target[0] = rows;
  let total = 1;
  for (const d of target) total *= d;
  let out: Buf;
  if (first.type === 'string') {
    if (ragged) throw invalidArgument('string tensors of different shapes cannot be padded');
    out = new Array(total);
  } else {
    out = new TYPED_ARRAY[first.type](total) as NumericTensorData;
    if (ragged) {
      if (padValue === undefined) throw invalidArgument('tensors of different shapes need a pad value');
      const v = first.type === 'int64' || first.type === 'uint64' ? BigInt(padValue) : Number(padValue);
      if (v !== 0 && v !== 0n) (out as unknown as { fill(v: unknown): void }).fill(v);
    }
  }
  let row = 0;
  for (const t of tensors) {
    const r = t.dims[0]!;
    if (!ragged) {
      if (ArrayBuffer.isView(out))
        (out as Float32Array).set(t.data as Float32Array, row * (total / rows || 0));
      else {
        const per = total / rows || 0;
        const src = t.data as Buf;
        for (let i = 0; i < src.length; i++) out[row * per + i] = src[i];
      }
    } else {
      copyRegion(t.data as Buf, t.dims, 0, out, target, row, r, t.dims);
    }
    row += r;
  }
  return { type: first.type, dims: target, data: out as Tensor['data'] };
}

/**
 * Rows `start` to `end` of `t` as a copy, with dims after 0 cut to `limits[d]` where a limit is
 * given (the padding a request did not have).
 */
export function sliceTrimmed(
  t: Tensor,
  start: number,
  end: number,
  limits: readonly (number | undefined)[] | undefined,
): Tensor {
  if (!limits) return sliceRows(t, start, end);
  const dims = t.dims.slice();
  let trimmed = false;
  for (let d = 1; d < dims.length; d++) {
    const l = limits[d];
    if (l !== undefined && l < dims[d]!) {
      dims[d] = l;
      trimmed = true;
    }
  }
  if (!trimmed) return sliceRows(t, start, end);
  dims[0] = end - start;
  let total = 1;
  for (const d of dims) total *= d;
  const out: Buf = t.type === 'string' ? new Array(total) : new TYPED_ARRAY[t.type](total);
  copyRegion(t.data as Buf, t.dims, start, out, dims, 0, end - start, dims);
  return { type: t.type, dims, data: out as Tensor['data'] };
}
