/**
 * The worker-thread side of {@link workerPool}: loads the described model once when the thread
 * starts (Piscina awaits the promised handler before it reports the thread ready), then runs
 * tasks. Built to dist/worker.js; the pool points Piscina at that file.
 * @internal
 */
import { threadId, workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { type InferResult, type Task, toWireError, type WorkerData } from './protocol.js';
import { type Loaded, load, runInfer, runLoad } from './runtime.js';

const ready: Promise<Loaded> = load(workerData as WorkerData, threadId).then(
  (model) => ({ model }),
  (error: unknown) => ({ error }),
);

export default ready.then((loaded) => {
  return async function mlserveWorkerTask(task: Task): Promise<unknown> {
    if (task.kind === 'load') return runLoad(task, loaded, threadId);
    if (!loaded.model) {
      return { ok: false, threadId, error: toWireError(loaded.error) } satisfies InferResult;
    }
    const { result, transferList } = await runInfer(task, loaded.model, threadId);
    // Outputs are moved back, not copied.
    return Piscina.move({
      get [Piscina.transferableSymbol]() {
        return transferList;
      },
      get [Piscina.valueSymbol]() {
        return result;
      },
    } as never);
  };
});
