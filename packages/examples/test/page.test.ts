import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, launchChromium, requireService } from '@mlserve/test-utils';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExampleApp } from '../src/app.js';
import { createFastifyApp } from '../src/fastify-app.js';
import { buildPage } from '../src/page/build.js';

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const haveChromium = requireService('chromium', 'apt-get install -y chromium');

type Stroke = Array<[number, number]>;

/** Digits as pen strokes, in canvas-relative coordinates (0..1), the way a person draws them. */
const DIGITS: Array<{ digit: number; strokes: Stroke[] }> = [
  {
    digit: 0,
    strokes: [
      Array.from({ length: 41 }, (_, i): [number, number] => {
        const a = (i / 40) * 2 * Math.PI - Math.PI / 2;
        return [0.5 + 0.2 * Math.cos(a), 0.5 + 0.3 * Math.sin(a)];
      }),
    ],
  },
  {
    digit: 7,
    strokes: [
      [
        [0.3, 0.24],
        [0.5, 0.23],
        [0.7, 0.22],
        [0.62, 0.4],
        [0.53, 0.6],
        [0.46, 0.8],
      ],
    ],
  },
  {
    digit: 4,
    strokes: [
      [
        [0.36, 0.2],
        [0.3, 0.5],
        [0.32, 0.56],
        [0.5, 0.56],
        [0.68, 0.54],
      ],
      [
        [0.6, 0.2],
        [0.6, 0.5],
        [0.6, 0.82],
      ],
    ],
  },
];

/** Draws strokes on the pad with the mouse: press, move in small steps, release. */
async function draw(page: Page, strokes: Stroke[]): Promise<void> {
  const box = (await page.locator('#pad').boundingBox())!;
  const at = ([x, y]: [number, number]) => [box.x + x * box.width, box.y + y * box.height] as const;
  for (const stroke of strokes) {
    const [first, ...rest] = stroke;
    await page.mouse.move(...at(first!));
    await page.mouse.down();
    for (const p of rest) await page.mouse.move(...at(p), { steps: 6 });
    await page.mouse.up();
  }
}

/** A "1", drawn with a finger. */
const ONE: Stroke = [
  [0.54, 0.2],
  [0.52, 0.4],
  [0.5, 0.6],
  [0.48, 0.8],
];

/** Draws one stroke with a finger, through the DevTools protocol's touch events. */
async function touchDraw(page: Page, stroke: Stroke): Promise<void> {
  const box = (await page.locator('#pad').boundingBox())!;
  const cdp = await page.context().newCDPSession(page);
  const at = ([x, y]: [number, number]) => ({ x: box.x + x * box.width, y: box.y + y * box.height });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at(stroke[0]!)] });
  for (let i = 1; i < stroke.length; i++) {
    const [a, b] = [stroke[i - 1]!, stroke[i]!];
    for (let k = 1; k <= 6; k++) {
      const t = k / 6;
      const p = at([a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]);
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [p] });
    }
  }
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await cdp.detach();
}

/** One response the page got, as the DevTools protocol saw it. */
interface Transfer {
  url: string;
  method: string;
  status: number;
  /** Bytes on the wire: headers and the (compressed) body; 0 when the browser's cache answered. */
  bytes: number;
  /** Answered by the browser's memory or disk cache, with no request to the server. */
  cached: boolean;
  encoding: string;
}

/** Records every response of `page` through the DevTools protocol (bytes from `loadingFinished`). */
async function recordTransfers(context: BrowserContext, page: Page): Promise<() => Transfer[]> {
  const cdp = await context.newCDPSession(page);
  const seen = new Map<string, Transfer>();
  const methods = new Map<string, string>();
  const fromCache = new Set<string>();
  /** The status on the wire: a revalidated file's responseReceived says 200 (the cached answer), this says 304. */
  const wire = new Map<string, number>();
  cdp.on('Network.responseReceivedExtraInfo', (e) => wire.set(e.requestId, e.statusCode));
  cdp.on('Network.requestWillBeSent', (e) => methods.set(e.requestId, e.request.method));
  cdp.on('Network.responseReceived', (e) => {
    const r = e.response;
    seen.set(e.requestId, {
      url: r.url.replace(/^https?:\/\/[^/]+/, ''),
      method: methods.get(e.requestId) ?? 'GET',
      status: r.status,
      bytes: 0,
      cached: fromCache.has(e.requestId) || Boolean(r.fromDiskCache || r.fromPrefetchCache),
      encoding: Object.entries(r.headers).find(([k]) => k.toLowerCase() === 'content-encoding')?.[1] ?? '',
    });
  });
  // Sent before responseReceived for the same request.
  cdp.on('Network.requestServedFromCache', (e) => fromCache.add(e.requestId));
  cdp.on('Network.loadingFinished', (e) => {
    const t = seen.get(e.requestId);
    if (t) t.bytes = e.encodedDataLength;
  });
  await cdp.send('Network.enable');
  return () => {
    const all = [...seen].map(([id, t]) => {
      const status = wire.get(id);
      // Nothing went over the wire when the cache answered: no wire status, no bytes.
      return status === undefined
        ? { ...t, cached: t.cached || t.bytes === 0 }
        : { ...t, status, cached: false };
    });
    seen.clear();
    fromCache.clear();
    wire.clear();
    return all;
  };
}

const total = (transfers: Transfer[]) => transfers.reduce((sum, t) => sum + t.bytes, 0);
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;
const FIRST_VISIT_LIMIT = 5_000_000;

describe.runIf(haveChromium)('the drawing page in Chromium', () => {
  let example: ExampleApp<Awaited<ReturnType<typeof createFastifyApp>>['app']>;
  let browser: Browser;
  let base: string;
  let publicDir: string;

  beforeAll(async () => {
    // Its own copy of the page: a build running beside the tests may be rewriting dist/.
    publicDir = await mkdtemp(join(tmpdir(), 'mlserve-page-'));
    await Promise.all([buildPage(publicDir), mkdir(ARTIFACTS, { recursive: true })]);
    example = await createFastifyApp({ publicDir });
    const port = await freePort();
    await example.app.listen({ port, host: '127.0.0.1' });
    base = `http://127.0.0.1:${port}`;
    // launch() starts Chromium with a fresh, temporary profile (user-data-dir) every time.
    browser = await launchChromium();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await example?.close();
    await rm(publicDir, { recursive: true, force: true });
  });

  for (const viewport of [
    { name: 'desktop', width: 1100, height: 760, isMobile: false, hasTouch: false, deviceScaleFactor: 1 },
    { name: 'phone', width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  ]) {
    it(`predicts drawn digits twice, in the browser and on the server, and they agree (${viewport.name})`, async () => {
      const { name, ...options } = viewport;
      const context = await browser.newContext({
        viewport: { width: options.width, height: options.height },
        ...options,
      });
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') problems.push(`console.error: ${msg.text()}`);
      });
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
      page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()}`));
      page.on('response', (res) => {
        if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
      });
      const transfers = await recordTransfers(context, page);
      try {
        const start = performance.now();
        await page.goto(base);
        await page.locator('#results[data-ready="true"]').waitFor({ timeout: 60_000 });
        const ready = performance.now() - start;
        let firstPrediction: number | undefined;
        let firstVisit: Transfer[] | undefined;
        for (const { digit, strokes } of DIGITS) {
          await page.click('#clear');
          await page.locator('#results[data-state="idle"]').waitFor();
          await draw(page, strokes);
          const drawn = performance.now();
          const done = page.locator(`#results[data-state="done"][data-strokes="${strokes.length}"]`);
          await done.waitFor({ timeout: 30_000 });
          // Time to the first prediction, a person's drawing time left out: navigation to the model
          // loaded in the browser, plus pen lifted to both answers shown.
          firstPrediction ??= ready + (performance.now() - drawn);
          // Everything the first visit cost, up to and including its first pair of predictions.
          firstVisit ??= transfers();
          const answers = await done.evaluate((el: HTMLElement) => ({ ...el.dataset }));
          expect({ digit, browser: answers.browser, server: answers.server }).toEqual({
            digit,
            browser: String(digit),
            server: String(digit),
          });
          await expect.poll(() => page.textContent('#status')).toBe(`Both say ${digit}`);
          expect(await page.textContent('#browser-time')).toMatch(/\d+(\.\d)?% · \d+\.\d ms/);
          expect(await page.textContent('#server-time')).toMatch(/\d+(\.\d)?% · \d+\.\d ms/);
          await page.screenshot({
            path: `${ARTIFACTS}page-${name}-${digit}.png`,
            fullPage: true,
            animations: 'disabled',
          });
        }
        if (options.hasTouch) {
          // A finger: touch events become pointer events (the pad has touch-action: none, so no scrolling).
          await page.click('#clear');
          await touchDraw(page, ONE);
          const done = page.locator('#results[data-state="done"][data-strokes="1"]');
          await done.waitFor({ timeout: 30_000 });
          expect(await done.evaluate((el: HTMLElement) => [el.dataset.browser, el.dataset.server])).toEqual([
            '1',
            '1',
          ]);
          expect(await page.evaluate(() => window.scrollY)).toBe(0);
        }
        // Clear empties the pad and the answers.
        await page.click('#clear');
        expect(await page.textContent('#browser-digit')).toBe('–');
        expect(await page.locator('#hint').isVisible()).toBe(true);
        expect(problems).toEqual([]);

        // Page weight: at most 5 MB on a first visit (the 14.2 MB .wasm travels brotli or gzip compressed).
        const weight = total(firstVisit!);
        const wasm = firstVisit!.find((t) => t.url.endsWith('.wasm'));
        expect(wasm?.encoding, 'the .wasm is sent compressed').toMatch(/^(br|gzip)$/);
        expect(weight).toBeLessThanOrEqual(FIRST_VISIT_LIMIT);

        // A reload: the page and the model revalidated (304), every hashed file from the cache.
        transfers();
        const reloadStart = performance.now();
        await page.reload();
        await page.locator('#results[data-ready="true"]').waitFor({ timeout: 60_000 });
        const reloadReady = performance.now() - reloadStart;
        await draw(page, DIGITS[1]!.strokes);
        const again = page.locator('#results[data-state="done"][data-strokes="1"]');
        await again.waitFor({ timeout: 30_000 });
        expect(await again.evaluate((el: HTMLElement) => [el.dataset.browser, el.dataset.server])).toEqual([
          '7',
          '7',
        ]);
        const reload = transfers().filter((t) => !/^\/v2(\/|$)/.test(t.url)); // the server's API aside
        const fetched = reload.filter((t) => !t.cached && t.status !== 304);
        expect(fetched.map((t) => `${t.status} ${t.url}`)).toEqual([]);
        expect(reload.filter((t) => t.status === 304).map((t) => t.url)).toEqual(
          expect.arrayContaining(['/', '/models/mnist.onnx']),
        );
        expect(reload.filter((t) => t.url.startsWith('/assets/')).every((t) => t.cached)).toBe(true);
        expect(problems).toEqual([]);

        const report = {
          viewport: name,
          firstVisit: {
            bytes: weight,
            files: firstVisit!.map(({ url, method, status, bytes, encoding }) => ({
              url,
              method,
              status,
              bytes,
              encoding,
            })),
            msToReady: Math.round(ready),
            msToFirstPrediction: Math.round(firstPrediction!), // msToReady + pen lifted to both answers
          },
          reload: {
            bytes: total(reload),
            files: reload.map(({ url, status, bytes, cached }) => ({ url, status, bytes, cached })),
            msToReady: Math.round(reloadReady),
          },
        };
        await writeFile(`${ARTIFACTS}page-weight-${name}.json`, `${JSON.stringify(report, null, 2)}\n`);
        console.log(
          `page weight (${name}): first visit ${mb(weight)} in ${firstVisit!.length} responses ` +
            `(.wasm ${mb(wasm!.bytes)} ${wasm!.encoding}), ready in ${Math.round(ready)} ms, ` +
            `first prediction ${Math.round(firstPrediction!)} ms (drawing time left out); ` +
            `reload ${mb(total(reload))}: ${reload.map((t) => `${t.url} ${t.cached ? 'cache' : t.status}`).join(', ')}; ` +
            `ready in ${Math.round(reloadReady)} ms`,
        );
      } finally {
        await context.close();
      }
    }, 120_000);
  }
});
