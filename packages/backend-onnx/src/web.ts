export type { ExecutionProvider, OrtSessionOptions } from './ort.js';
export type { OnnxModelOptions, OnnxModelSource, OnnxStats } from './session-model.js';
export { loadOnnxModel } from './web-loader.js';
