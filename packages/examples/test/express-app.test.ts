import type { Server } from 'node:http';
import { freePort } from '@mlserve/test-utils';
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExampleApp } from '../src/app.js';
import { createExpressApp } from '../src/express-app.js';
import { checkServing, post, v2Request } from './serving.js';

describe('the Express example', () => {
  let example: ExampleApp<Express>;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    example = await createExpressApp();
    const port = await freePort();
    server = await new Promise<Server>((resolve) => {
      const s = example.app.listen(port, '127.0.0.1', () => resolve(s));
    });
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await example?.close();
  });

  it('serves MNIST over V2 and TF Serving with validation, cache, batching and metrics', async () => {
    await checkServing(base, 'Express');
  });

  it("keeps the app's own routes", async () => {
    const home = await fetch(`${base}/`);
    expect(home.status).toBe(200);
    expect(await home.text()).toMatch(/mlserve on Express/);
    expect((await post(base, '/not-a-route', '{"a":1}')).status).toBe(404);
  });

  it('refuses new requests once closed', async () => {
    await example.close();
    const res = await post(base, '/v2/models/mnist/infer', v2Request(0));
    // Closed and drained, the model is gone from the registry: NOT_FOUND (UNAVAILABLE while draining).
    expect([404, 503]).toContain(res.status);
    expect(['NOT_FOUND', 'UNAVAILABLE']).toContain(((await res.json()) as { code: string }).code);
    expect(example.registry.names()).toEqual([]);
    expect((await fetch(`${base}/v2/health/ready`)).status).toBe(503);
  });
});
