import { type DataType, isDataType, type TensorInfo, unimplemented } from '@mlserve/core';
import type { OrtSession } from './ort.js';

type ValueMetadata = OrtSession['inputMetadata'][number];

/** The session's tensors as core TensorInfos, and the outputs left out because core cannot hold them. */
export interface SessionSignature {
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** Outputs that are not tensors of a core type (sequences, maps, int4...): never fetched. */
  skippedOutputs: { name: string; reason: string }[];
}

/**
 * Reads names, element types and dims from `session.inputMetadata` / `outputMetadata`. Symbolic
 * dims (`'batch'`) and unnamed dynamic dims become -1, their names going to `dimNames`; a tensor
 * whose dim 0 is dynamic is `batched`. onnxruntime-web reports an unnamed dynamic dim as
 * 4294967295 (-1 as uint32), which is read as dynamic too.
 */
export function readSignature(
  session: OrtSession,
  modelName: string,
  padValues: Readonly<Record<string, number | bigint>> = {},
): SessionSignature {
  const inputs: TensorInfo[] = [];
  for (const m of session.inputMetadata) {
    const problem = unsupported(m);
    if (problem) {
      throw unimplemented(`model "${modelName}": input "${m.name}" is ${problem}, which mlserve cannot feed`);
    }
    inputs.push(toInfo(m as TensorMetadata));
  }
  for (const name of Object.keys(padValues)) {
    const info = inputs.find((i) => i.name === name);
    if (!info) {
      const known = inputs.map((i) => `"${i.name}"`).join(', ');
      throw new TypeError(
        `loadOnnxModel: options.padValues names "${name}", which is not an input of the model (inputs: ${known})`,
      );
    }
    const v = padValues[name]!;
    const wantsBigint = info.type === 'int64' || info.type === 'uint64';
    if (wantsBigint ? typeof v !== 'bigint' && !Number.isSafeInteger(v) : typeof v !== 'number') {
      throw new TypeError(
        `loadOnnxModel: options.padValues.${name} must be a ${wantsBigint ? 'bigint or integer' : 'number'}`,
      );
    }
    info.padValue = wantsBigint ? BigInt(v) : v;
  }
  const outputs: TensorInfo[] = [];
  const skippedOutputs: { name: string; reason: string }[] = [];
  for (const m of session.outputMetadata) {
    const problem = unsupported(m);
    if (problem) skippedOutputs.push({ name: m.name, reason: problem });
    else outputs.push(toInfo(m as TensorMetadata));
  }
  return { inputs, outputs, skippedOutputs };
}

export interface TensorMetadata {
  name: string;
  isTensor: true;
  type: string;
  shape: readonly (number | string)[];
}

function unsupported(m: ValueMetadata): string | undefined {
  if (!m.isTensor) return 'not a tensor (a sequence, map or optional)';
  const type = (m as TensorMetadata).type;
  if (!isDataType(type)) return `a ${type} tensor`;
  return undefined;
}

/** One tensor's metadata as a core TensorInfo. @internal */
export function toInfo(m: TensorMetadata): TensorInfo {
  const dims: number[] = [];
  const dimNames: (string | null)[] = [];
  let named = false;
  for (const d of m.shape) {
    if (typeof d === 'string') {
      dims.push(-1);
      dimNames.push(d === '' ? null : d);
      if (d !== '') named = true;
    } else if (d < 0 || d >= 0xffffffff) {
      dims.push(-1);
      dimNames.push(null);
    } else {
      dims.push(d);
      dimNames.push(null);
    }
  }
  const info: TensorInfo = {
    name: m.name,
    type: m.type as DataType,
    dims,
    batched: dims.length > 0 && dims[0] === -1,
  };
  if (named) info.dimNames = dimNames;
  return info;
}
