import type { ModelRegistry } from '@mlserve/core';
import { SAMPLE_REQUEST } from './paths.js';

/** Options of `createFastifyApp` and `createExpressApp`. */
export interface ExampleAppOptions {
  /** The ONNX file served as model `mnist` (default: the demo repository's MNIST CNN). */
  modelFile?: string;
  /** Worker threads, each with its own onnxruntime session of one intra-op thread (default 2). */
  threads?: number;
  /** Fastify's request logger (default off). Fastify only. */
  logger?: boolean;
  /** The built page (default `dist/public`). Fastify only. */
  publicDir?: string;
}

/** An example app: the framework's app, the registry it serves, and how to stop it. */
export interface ExampleApp<App> {
  app: App;
  registry: ModelRegistry;
  /** Stops serving: closes the server, drains requests in flight, then ends the workers. */
  close(): Promise<void>;
}

/** Where `main()` listens: loopback unless `HOST` says otherwise (`HOST=0.0.0.0` to try the page on a phone). */
export const HOST = process.env.HOST ?? '127.0.0.1';

/** Prints the curl lines for a running example and stops it cleanly on Ctrl-C / SIGTERM. */
export function listen(framework: string, port: number, close: () => Promise<void>, page: boolean): void {
  const base = `http://${HOST === '0.0.0.0' || HOST === '::' ? 'localhost' : HOST}:${port}`;
  console.log(`mlserve on ${framework}: ${base}${page ? `  (open ${base}/ and draw a digit)` : ''}`);
  console.log(`  curl ${base}/hello`);
  console.log(`  curl ${base}/v2/models/mnist`);
  console.log(
    `  curl ${base}/v2/models/mnist/infer -H 'content-type: application/json' -d @${SAMPLE_REQUEST}`,
  );
  console.log(`  curl ${base}/metrics`);
  const stop = () => {
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
