export { type WorkerPoolOptions, type WorkerPoolStats, workerPool } from './pool.js';
export { type ComputeBudget, computeBudget, setComputeBudget } from './budget.js';
export { prepareTransfer, type Transferable } from './transfer.js';
export type { LoaderContext, ModelDescription, ModelLoader } from './protocol.js';
