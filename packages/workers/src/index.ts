export { type ComputeBudget, computeBudget, setComputeBudget } from './budget.js';
export { type WorkerPoolOptions, type WorkerPoolStats, workerPool } from './pool.js';
export type { LoaderContext, ModelDescription, ModelLoader } from './protocol.js';
export { prepareTransfer, type Transferable } from './transfer.js';
