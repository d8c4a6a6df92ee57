export {
  type ActiveBackend,
  AUTO_ORDER,
  activateBackend,
  BACKEND_PACKAGES,
  type BackendOptions,
  defaultWasmPaths,
  type ModuleLoader,
  type TfjsBackendName,
} from './backends.js';
export { coreType, type TfDtype, toTfData } from './convert.js';
export { fileSystemHandler, type TfIo } from './fs-io.js';
export { loadTfjsModel, type TfjsModelFormat, type TfjsModelOptions } from './model.js';
export type { SavedModelHandle, TfNodeSavedModelApi } from './saved-model.js';
