export { cleanOrtMessage } from './errors.js';
export { loadOnnxModel } from './node.js';
export type { ExecutionProvider, OrtSessionOptions } from './ort.js';
export { type OnnxModelOptions, type OnnxModelSource, type OnnxStats, onnxSession } from './session-model.js';
