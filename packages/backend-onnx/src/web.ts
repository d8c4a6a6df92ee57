export type { ExecutionProvider, OrtSessionOptions } from './ort.js';
export { type OnnxModelOptions, type OnnxModelSource, type OnnxStats, onnxSession } from './session-model.js';
export { loadOnnxModel } from './web-loader.js';
