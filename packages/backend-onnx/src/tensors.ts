import { invalidArgument, type Tensor, type Tensors } from '@mlserve/core';
import type { OrtModule, OrtTensor } from './ort.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Core tensors to ORT feeds. Numeric data is handed over without a copy (ORT reads it during the
 * run and keeps nothing). Strings: ORT's native string tensors end at a NUL byte, so a string that
 * holds one would come back cut short; it is rejected instead. Raw-byte strings (`Uint8Array[]`)
 * are decoded as UTF-8, since ORT's string tensors hold text.
 */
export function toFeeds(
  ort: OrtModule,
  inputs: Tensors,
  names: readonly string[],
): Record<string, OrtTensor> {
  const feeds: Record<string, OrtTensor> = {};
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const t = inputs[name]!;
    if (t instanceof ort.Tensor) {
      feeds[name] = t as OrtTensor;
    } else if (t.type === 'string') {
      feeds[name] = new ort.Tensor('string', stringData(name, t.data as string[] | Uint8Array[]), t.dims);
    } else {
      feeds[name] = new ort.Tensor(t.type, t.data as Float32Array, t.dims);
    }
  }
  return feeds;
}

function stringData(name: string, data: string[] | Uint8Array[]): string[] {
  const out: string[] = new Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const el = data[i]!;
    let s: string;
    if (typeof el === 'string') s = el;
    else if (!(el instanceof Uint8Array)) {
      throw invalidArgument(`input "${name}": element ${i} is not a string or a Uint8Array`);
    } else {
      try {
        s = utf8.decode(el);
      } catch {
        throw invalidArgument(
          `input "${name}": element ${i} is not valid UTF-8 (onnxruntime string tensors hold text)`,
        );
      }
    }
    if (s.includes('\0')) {
      throw invalidArgument(
        `input "${name}": element ${i} contains a NUL character, which onnxruntime string tensors cannot hold`,
      );
    }
    out[i] = s;
  }
  return out;
}

/**
 * An ORT output as a core tensor that owns its data: float16 becomes `Uint16Array` bits whatever
 * the runtime returned (a `Float16Array` where the global exists), and data that is a view into a
 * larger buffer is copied so the caller never keeps more memory alive than the tensor needs.
 */
export function fromOrt(value: OrtTensor): Tensor {
  const type = value.type;
  const dims = value.dims.slice();
  if (type === 'string') return { type: 'string', dims, data: (value.data as string[]).slice() };
  let data = value.data as unknown as Float32Array;
  if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = data.slice();
  if (type === 'float16' && !(data instanceof Uint16Array)) {
    const view = data as unknown as { buffer: ArrayBufferLike; byteOffset: number; length: number };
    return { type, dims, data: new Uint16Array(view.buffer, view.byteOffset, view.length) };
  }
  return { type, dims, data } as Tensor;
}

/** Converts every fetched output. */
export function fromOrtOutputs(results: Record<string, unknown>, names: readonly string[]): Tensors {
  const out: Tensors = {};
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const v = results[name];
    if (v !== undefined) out[name] = fromOrt(v as OrtTensor);
  }
  return out;
}
