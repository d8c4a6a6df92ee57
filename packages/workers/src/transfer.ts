import { type Tensor, type Tensors, TYPED_ARRAY } from '@mlserve/core';

/** Tensors ready to post to another thread, and the buffers to move with them. */
export interface Transferable {
  tensors: Tensors;
  transferList: ArrayBuffer[];
}

/**
 * Prepares tensors to cross a thread boundary without copies where that is safe.
 *
 * - A typed array that spans its whole `ArrayBuffer` is transferred (moved): the sender's array is
 *   detached afterwards (its length becomes 0).
 * - A view into a larger buffer (`byteOffset != 0` or a shorter `byteLength`: an HTTP body, a
 *   batch output, a Node `Buffer` from the shared pool) is copied first, since moving its buffer
 *   would detach its neighbours too.
 * - `copy: true` copies every array, so the sender keeps its data.
 * - SharedArrayBuffer-backed arrays are shared, never moved or copied; string tensors are cloned.
 *
 * The tensor objects passed in are never modified; new tensor objects are returned.
 *
 * @example
 * ```ts
 * const { tensors, transferList } = prepareTransfer(inputs, { copy: false });
 * port.postMessage(tensors, transferList);
 * ```
 */
export function prepareTransfer(input: Tensors, { copy = false }: { copy?: boolean } = {}): Transferable {
  const tensors: Tensors = {};
  const transferList: ArrayBuffer[] = [];
  const moved = new Set<ArrayBufferLike>();
  for (const [name, t] of Object.entries(input)) {
    tensors[name] = prepareTensor(t, copy, moved, transferList);
  }
  return { tensors, transferList };
}

function prepareTensor(t: Tensor, copy: boolean, moved: Set<ArrayBufferLike>, list: ArrayBuffer[]): Tensor {
  if (t.type === 'string' || !ArrayBuffer.isView(t.data))
    return { type: t.type, dims: [...t.dims], data: t.data };
  const data = t.data as ArrayBufferView;
  const buffer = data.buffer;
  if (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer) {
    return { type: t.type, dims: [...t.dims], data: t.data };
  }
  const whole = data.byteOffset === 0 && data.byteLength === buffer.byteLength;
  // A Buffer is copied into a plain typed array too: Node marks its pool untransferable.
  const plain = data.constructor === TYPED_ARRAY[t.type];
  if (copy || !whole || !plain) {
    const ctor = TYPED_ARRAY[t.type] as unknown as new (src: ArrayBufferView) => ArrayBufferView;
    const fresh = new ctor(data);
    list.push(fresh.buffer as ArrayBuffer);
    return { type: t.type, dims: [...t.dims], data: fresh as Tensor['data'] };
  }
  if (!moved.has(buffer)) {
    moved.add(buffer);
    list.push(buffer as ArrayBuffer);
  }
  return { type: t.type, dims: [...t.dims], data: t.data };
}
