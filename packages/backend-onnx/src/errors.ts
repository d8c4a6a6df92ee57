import { isServeError, ServeError } from '@mlserve/core';

/**
 * ORT's messages carry build paths, C++ signatures and status prefixes
 * (`/onnxruntime_src/.../element_wise_ops.h:563 void onnxruntime::BroadcastIterator::Init(...) axis == 1
 * was false. Attempting to broadcast ...`). This keeps what a person can act on.
 */
export function cleanOrtMessage(message: string): string {
  let m = message.trim();
  m = m.replace(/^failed to call OrtRun\(\)\.\s*/i, '');
  m = m.replace(/ERROR_CODE: \d+, ERROR_MESSAGE:\s*/g, '');
  m = m.replace(/\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*/g, '');
  // A source location, optionally followed by the C++ signature and the failed ORT_ENFORCE condition.
  m = m.replace(
    /\S*\/onnxruntime\/\S+\.(?:h|hpp|cc|cpp):\d+\s+(?:[^\n]*?\bwas false\.\s*|[\w:<>,*& ]*?\([^)]*\)\s*)?/g,
    '',
  );
  m = m.replace(/Status Message:\s*/g, '');
  m = m.replace(/\s+/g, ' ').trim();
  return m;
}

/** Messages that mean the request's inputs did not fit the model. */
const INPUT_PROBLEM =
  /unexpected input data type|invalid rank|invalid dimensions|got invalid dimension|input .*is missing|broadcast|shape mismatch|incompatible dimensions|invalid input|must be a string array|data must be type of|size\(.*\) does not match|input tensor cannot be reshaped|out of range|invalid argument/i;

/**
 * A failed run as a ServeError: INVALID_ARGUMENT where the message says the inputs did not fit the
 * model (a shape only the graph could reject, say), INTERNAL otherwise. The original error is the
 * `cause`.
 */
export function runError(modelName: string, err: unknown): ServeError {
  if (isServeError(err)) return err;
  const raw = err instanceof Error ? err.message : String(err);
  const message = cleanOrtMessage(raw);
  const code =
    err instanceof TypeError || err instanceof RangeError || INPUT_PROBLEM.test(raw)
      ? 'INVALID_ARGUMENT'
      : 'INTERNAL';
  return new ServeError(code, `model "${modelName}": onnxruntime rejected the request: ${message}`, {
    cause: err,
  });
}

/** A failed load as a ServeError: NOT_FOUND for a missing file, INVALID_ARGUMENT for bytes that are not a model. */
export function loadError(what: string, err: unknown): ServeError {
  if (isServeError(err)) return err;
  const raw = err instanceof Error ? err.message : String(err);
  const message = cleanOrtMessage(raw);
  if (/doesn't exist|no such file|ENOENT|not found/i.test(raw) && !/backend not found/i.test(raw)) {
    return new ServeError('NOT_FOUND', `${what}: the model file was not found (${message})`, { cause: err });
  }
  if (
    /protobuf parsing failed|invalid model|model_load_utils|opset|ir version|unsupported model|load model/i.test(
      raw,
    )
  ) {
    return new ServeError('INVALID_ARGUMENT', `${what} is not a model onnxruntime can load: ${message}`, {
      cause: err,
    });
  }
  return new ServeError('INTERNAL', `${what}: onnxruntime could not create a session: ${message}`, {
    cause: err,
  });
}
