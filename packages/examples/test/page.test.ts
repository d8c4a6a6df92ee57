import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, requireService } from '@mlserve/test-utils';
import { type Browser, chromium, type Page } from 'playwright-core';
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
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
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
      try {
        await page.goto(base);
        await page.locator('#results[data-ready="true"]').waitFor({ timeout: 60_000 });
        for (const { digit, strokes } of DIGITS) {
          await page.click('#clear');
          await page.locator('#results[data-state="idle"]').waitFor();
          await draw(page, strokes);
          const done = page.locator(`#results[data-state="done"][data-strokes="${strokes.length}"]`);
          await done.waitFor({ timeout: 30_000 });
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
      } finally {
        await context.close();
      }
    }, 120_000);
  }
});
