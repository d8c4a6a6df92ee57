export { cleanOrtMessage } from './errors.js';
export { loadOnnxModel } from './node.js';
export type { ExecutionProvider, OrtSessionOptions } from './ort.js';
export type { OnnxModelOptions, OnnxModelSource, OnnxStats } from './session-model.js';
