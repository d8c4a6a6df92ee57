/**
 * The child-process side of {@link workerPool} with `isolation: 'process'`: loads the described
 * model, then answers tasks over the IPC channel. Built to dist/child.js.
 * @internal
 */
import type { ChildMessage, ParentMessage } from './processes.js';
import { toWireError } from './protocol.js';
import { type Loaded, load, runInfer } from './runtime.js';

let loaded: Promise<Loaded> | undefined;

function send(message: ChildMessage): void {
  process.send?.(message);
}

process.on('message', async (message: ParentMessage) => {
  if (message.kind === 'init') {
    loaded = load(message.data, process.pid).then(
      (model) => ({ model }),
      (error: unknown) => ({ error }),
    );
    const l = await loaded;
    send(
      l.model
        ? { kind: 'ready', ok: true, metadata: l.model.metadata() }
        : { kind: 'ready', ok: false, error: toWireError(l.error) },
    );
    return;
  }
  const l = await loaded;
  if (message.kind === 'warmup') {
    try {
      await l?.model?.warmup?.();
      send({ kind: 'warmed', id: message.id });
    } catch (err) {
      send({ kind: 'warmed', id: message.id, error: toWireError(err) });
    }
    return;
  }
  if (!l?.model) {
    send({
      kind: 'result',
      id: message.id,
      result: { ok: false, threadId: process.pid, error: toWireError(l?.error) },
    });
    return;
  }
  const { result } = await runInfer(message.task, l.model, process.pid);
  send({ kind: 'result', id: message.id, result });
});

// The parent went away: nothing left to serve.
process.on('disconnect', () => process.exit(0));
