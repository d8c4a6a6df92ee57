import type { Server } from 'node:http';
import { freePort } from '@mlserve/test-utils';
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExampleApp } from '../src/app.js';
import { createExpressApp } from '../src/express-app.js';
import { checkServing, post } from './serving.js';

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

  it("keeps the app's own routes and body parser", async () => {
    const home = await fetch(`${base}/`);
    expect(home.status).toBe(200);
    expect(await home.text()).toMatch(/mlserve on Express/);
    // express.json() after the router still parses the app's own JSON routes; V2 bodies never reach it.
    const missing = await post(base, '/not-a-route', '{"a":1}');
    expect(missing.status).toBe(404);
  });

  it('refuses new requests once closed, and ends the workers', async () => {
    await example.close();
    const res = await post(base, '/v2/models/mnist/infer', '{"inputs":[]}');
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect((await fetch(`${base}/v2/health/ready`)).status).toBe(503);
  });
});
