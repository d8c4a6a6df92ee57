/**
 * The drawing page: a canvas taking pointer strokes (mouse, pen or finger), then two predictions of
 * the same pre-processed 28x28 input, one on-device with onnxruntime-web through
 * `@mlserve/backend-onnx/web`, one on the server through the KServe V2 API. Bundled by `buildPage()`.
 */
import { loadOnnxModel } from '@mlserve/backend-onnx/web';
import { createClient } from '@mlserve/client';
import { type Model, tensor } from '@mlserve/core';
import * as ort from 'onnxruntime-web';
import { argmax, inkFromRgba, SIZE, softmax, toMnist } from './preprocess.js';

/** Where the app serves onnxruntime-web's `.wasm` under its content hash (`buildPage()` defines it). */
declare const __ORT_WASM_URL__: string;

// onnxruntime-web fetches its WebAssembly from the app, by the hashed name the build gave it.
// Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages.
ort.env.wasm.wasmPaths = { wasm: __ORT_WASM_URL__ };
ort.env.wasm.numThreads = globalThis.crossOriginIsolated
  ? Math.min(4, navigator.hardwareConcurrency || 1)
  : 1;

type Point = [number, number];
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const pad = $<HTMLCanvasElement>('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true })!;
const preview = $<HTMLCanvasElement>('preview');
const results = $('results');
const status = $('status');
const bars = $('bars');

/** Strokes in canvas-relative coordinates (0..1), so the drawing survives a resize. */
const strokes: Point[][] = [];
let current: Point[] | undefined;
let model: Model | undefined;
/** Why the browser's model could not load; the server still answers then. */
let loadError: string | undefined;
let busy = false;
let dirty = false;

function show(text: string, kind = ''): void {
  status.textContent = text;
  status.className = `status ${kind}`;
}

// ---- drawing -------------------------------------------------------------------------------------

function fitCanvas(): void {
  const size = Math.round(pad.clientWidth * (window.devicePixelRatio || 1));
  if (size > 0 && pad.width !== size) {
    pad.width = size;
    pad.height = size;
    redraw();
  }
}

function redraw(): void {
  const s = pad.width;
  ctx.clearRect(0, 0, s, s);
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.lineWidth = s * 0.07;
  ctx.strokeStyle = '#1d2330';
  for (const stroke of strokes) {
    const [first, ...rest] = stroke;
    if (!first) continue;
    ctx.beginPath();
    ctx.moveTo(first[0] * s, first[1] * s);
    // A single tap draws a dot.
    if (rest.length === 0) ctx.lineTo(first[0] * s + 0.01, first[1] * s);
    for (const [x, y] of rest) ctx.lineTo(x * s, y * s);
    ctx.stroke();
  }
  pad.classList.toggle('inked', strokes.length > 0);
  $('hint').hidden = strokes.length > 0;
}

function point(e: PointerEvent): Point {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
}

pad.addEventListener('pointerdown', (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  current = [point(e)];
  strokes.push(current);
  redraw();
});
pad.addEventListener('pointermove', (e) => {
  if (!current) return;
  for (const ev of e.getCoalescedEvents?.() ?? [e]) current.push(point(ev));
  redraw();
});
const endStroke = () => {
  if (!current) return;
  current = undefined;
  void predict();
};
pad.addEventListener('pointerup', endStroke);
pad.addEventListener('pointercancel', endStroke);

$('clear').addEventListener('click', () => {
  strokes.length = 0;
  redraw();
  drawPreview(undefined);
  for (const who of ['browser', 'server']) {
    $(`${who}-digit`).textContent = '–';
    $(`${who}-time`).innerHTML = '&nbsp;';
  }
  renderBars(undefined, undefined);
  results.dataset.state = 'idle';
  results.dataset.strokes = '0';
  show(model || loadError ? 'Ready: draw a digit' : 'Loading the model…');
});

// ---- predicting ----------------------------------------------------------------------------------

/** The browser's answer: the same model file, on onnxruntime-web. */
async function inBrowser(pixels: Float32Array): Promise<Float32Array> {
  if (!model) throw new Error(loadError ?? 'the model is still loading');
  const { logits } = await model.infer({
    image: { type: 'float32', dims: [1, 1, SIZE, SIZE], data: pixels.slice() },
  });
  return logits!.data as Float32Array;
}

/** This page's server, through @mlserve/client (binary tensors: the server lists the extension). */
const server = createClient({ url: '/', timeoutMs: 10_000 });

/** The server's answer: a KServe V2 request with the same 784 floats. */
async function onServer(pixels: Float32Array): Promise<Float32Array> {
  const { logits } = await server.infer('mnist', {
    image: tensor('float32', pixels.slice(), [1, 1, SIZE, SIZE]),
  });
  if (!logits) throw new Error('the server sent no logits');
  return logits.data as Float32Array;
}

async function timed<T>(f: () => Promise<T>): Promise<{ value?: T; error?: unknown; ms: number }> {
  const t0 = performance.now();
  try {
    const value = await f();
    return { value, ms: performance.now() - t0 };
  } catch (error) {
    return { error, ms: performance.now() - t0 };
  }
}

async function predict(): Promise<void> {
  if (busy || !(model || loadError)) {
    dirty = true;
    return;
  }
  busy = true;
  dirty = false;
  const used = strokes.length;
  results.dataset.state = 'busy';
  const pixels = toMnist(
    inkFromRgba(ctx.getImageData(0, 0, pad.width, pad.height).data, pad.width, pad.height),
  );
  drawPreview(pixels);
  if (pixels) {
    // One after the other, so neither latency includes the other's work.
    const browser = await timed(() => inBrowser(pixels));
    const server = await timed(() => onServer(pixels));
    const pb = browser.value && softmax(browser.value);
    const ps = server.value && softmax(server.value);
    answer('browser', pb, browser.ms, browser.error);
    answer('server', ps, server.ms, server.error);
    renderBars(pb, ps);
    if (pb && ps) {
      const same = argmax(pb) === argmax(ps);
      show(same ? `Both say ${argmax(pb)}` : 'They disagree!', same ? 'agree' : 'disagree');
    } else show('A prediction failed (see above)', 'error');
  }
  results.dataset.strokes = String(used);
  results.dataset.state = 'done';
  busy = false;
  if (dirty) void predict();
}

function answer(who: 'browser' | 'server', probs: number[] | undefined, ms: number, error: unknown): void {
  const digit = probs ? argmax(probs) : undefined;
  $(`${who}-digit`).textContent = digit === undefined ? '!' : String(digit);
  $(`${who}-time`).textContent = probs
    ? `${(probs[digit!]! * 100).toFixed(1)}% · ${ms.toFixed(1)} ms`
    : `failed: ${error instanceof Error ? error.message : String(error)}`;
  results.dataset[who] = digit === undefined ? '' : String(digit);
}

function drawPreview(pixels: Float32Array | undefined): void {
  const p = preview.getContext('2d')!;
  const img = p.createImageData(SIZE, SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) {
    const v = Math.round((pixels?.[i] ?? 0) * 255);
    img.data.set([v, v, v, 255], i * 4);
  }
  p.putImageData(img, 0, 0);
}

const rows = Array.from({ length: 10 }, (_, d) => {
  const row = document.createElement('div');
  row.className = 'bar-row';
  row.innerHTML = `<span class="label">${d}</span><span class="tracks"><span class="track browser"><i></i></span><span class="track server"><i></i></span></span><span class="pct"></span>`;
  bars.append(row);
  return row;
});

function renderBars(pb: number[] | undefined, ps: number[] | undefined): void {
  const top = pb ? argmax(pb) : ps ? argmax(ps) : -1;
  rows.forEach((row, d) => {
    const [b, s] = row.querySelectorAll('i');
    b!.style.width = `${(pb?.[d] ?? 0) * 100}%`;
    s!.style.width = `${(ps?.[d] ?? 0) * 100}%`;
    row.querySelector('.pct')!.textContent = pb || ps ? `${(((pb ?? ps)![d] ?? 0) * 100).toFixed(1)}%` : '';
    row.classList.toggle('top', d === top);
  });
}

// ---- start ---------------------------------------------------------------------------------------

new ResizeObserver(fitCanvas).observe(pad);
fitCanvas();
renderBars(undefined, undefined);
drawPreview(undefined);
try {
  model = await loadOnnxModel('/models/mnist.onnx', { name: 'mnist' });
  await model.warmup?.();
  results.dataset.ready = 'true';
  show('Ready: draw a digit');
  if (strokes.length > 0) void predict();
} catch (err) {
  // Drawing still works: the server answers alone.
  loadError = `could not load the model here (${err instanceof Error ? err.message : String(err)})`;
  show('The browser could not load the model; the server still answers', 'error');
  if (strokes.length > 0) void predict();
}
