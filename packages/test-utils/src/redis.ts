import { type ChildProcess, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { freePort } from './ports.js';

/** A redis-server this test started; `stop()` kills it, `kill()` simulates a crash. */
export interface RedisServer {
  port: number;
  url: string;
  process: ChildProcess;
  /** Graceful stop; resolves when the process has exited. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port (after stop or kill). */
  restart(): Promise<void>;
}

/**
 * Starts a real, throwaway redis-server on a free loopback port (no persistence) and waits
 * until it answers PING.
 *
 * @example
 * ```ts
 * const redis = await startRedis();
 * const client = new Redis(redis.port, '127.0.0.1');
 * afterAll(() => redis.stop());
 * ```
 */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    process: undefined as unknown as ChildProcess,
    stop: () => terminate(server.process, 'SIGTERM'),
    kill: () => terminate(server.process, 'SIGKILL'),
    async restart() {
      server.process = launch(port);
      await waitForPing(port, server.process);
    },
  };
  server.process = launch(port);
  await waitForPing(port, server.process);
  return server;
}

function launch(port: number): ChildProcess {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'yes',
    ],
    { stdio: 'ignore' },
  );
  child.unref();
  return child;
}

function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    // The child is unref'd so a forgotten server never holds a test process open; while we wait
    // for it to exit, hold a reference so the wait itself keeps the process alive.
    child.ref();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + 10_000;
  let lastError: unknown;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    try {
      if (await ping(port)) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not answer on port ${port}: ${String(lastError)}`);
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    sock.setTimeout(500);
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => {
      sock.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', (e) => {
      sock.destroy();
      reject(e);
    });
  });
}
