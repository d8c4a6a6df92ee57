import type { InferenceSession, Tensor } from 'onnxruntime-common';

/** What this package uses of an onnxruntime module (onnxruntime-node or onnxruntime-web). */
export interface OrtModule {
  InferenceSession: typeof InferenceSession;
  Tensor: typeof Tensor;
}

/** An ORT tensor (onnxruntime-common's `Tensor`). */
export type OrtTensor = Tensor;

/** An ORT session (onnxruntime-common's `InferenceSession`). */
export type OrtSession = InferenceSession;

/** ORT's session options, passed through as they are. */
export type OrtSessionOptions = InferenceSession.SessionOptions;

/** One entry of `executionProviders`: a name (`'cuda'`) or a config object (`{ name: 'cuda', deviceId: 1 }`). */
export type ExecutionProvider = InferenceSession.ExecutionProviderConfig;
