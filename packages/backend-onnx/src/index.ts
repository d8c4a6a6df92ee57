export { cleanOrtMessage } from './errors.js';
export { readOnnxSignature } from './header.js';
export type { SessionSignature } from './metadata.js';
export { loadOnnxModel } from './node.js';
export type { ExecutionProvider, OrtSessionOptions } from './ort.js';
export { type OnnxModelOptions, type OnnxModelSource, type OnnxStats, onnxSession } from './session-model.js';
