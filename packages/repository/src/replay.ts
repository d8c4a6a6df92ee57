/**
 * Requests to replay in shadow when live traffic is thin: the warmup samples, or a payload log
 * written by `@mlserve/monitor`'s `jsonLinesSink`.
 */
import { readFile } from 'node:fs/promises';
import { invalidArgument, type ModelMetadata, type Tensors } from '@mlserve/core';
import type { WarmupConfig, WarmupSample } from './config.js';
import { sampleInputs, zeroInputs } from './warmup.js';

/**
 * Parses a payload log: one JSON object a line, as `@mlserve/monitor`'s `jsonLinesSink` writes
 * them: `{ "time", "model", "version", "id", "inputs": { name: { "type", "dims", "data" } },
 * "outputs", "context" }` (64-bit integers as strings, bytes as base64 strings). Lines of other
 * models (when `model` is given) and lines that do not parse are skipped; at most `limit`
 * requests are returned.
 *
 * @example
 * ```ts
 * const samples = parsePayloadLog(await readFile('payloads.jsonl', 'utf8'), 'mnist');
 * ```
 */
export function parsePayloadLog(text: string, model?: string, limit = 1000): WarmupSample[] {
  const out: WarmupSample[] = [];
  for (const line of text.split('\n')) {
    if (out.length >= limit) break;
    if (line.trim() === '') continue;
    let rec: { model?: unknown; inputs?: unknown };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue;
    }
    if (model !== undefined && rec.model !== undefined && rec.model !== model) continue;
    if (typeof rec.inputs !== 'object' || rec.inputs === null) continue;
    const inputs: WarmupSample['inputs'] = {};
    let ok = true;
    for (const [name, t] of Object.entries(rec.inputs as Record<string, unknown>)) {
      const tensor = t as { dims?: unknown; data?: unknown };
      if (!Array.isArray(tensor.dims) || !Array.isArray(tensor.data)) {
        ok = false;
        break;
      }
      inputs[name] = { dims: tensor.dims as number[], data: tensor.data as (number | string | boolean)[] };
    }
    if (ok && Object.keys(inputs).length > 0) out.push({ inputs });
  }
  return out;
}

/**
 * The requests a shadow replays: from a payload log file when given, else the warmup samples,
 * else one request of zeros. Requests that do not fit the model's signature are skipped.
 *
 * @example
 * ```ts
 * const requests = await replayRequests(model.metadata(), config.warmup, { payloadLog: '/srv/models/mnist/payloads.jsonl' });
 * ```
 */
export async function replayRequests(
  meta: ModelMetadata,
  warmup: WarmupConfig,
  source: { payloadLog?: string } = {},
): Promise<Tensors[]> {
  let samples: WarmupSample[];
  let file = 'config.json warmup.samples';
  if (source.payloadLog) {
    file = source.payloadLog;
    samples = parsePayloadLog(await readFile(source.payloadLog, 'utf8'), meta.name);
    if (samples.length === 0)
      throw invalidArgument(`${source.payloadLog} holds no requests for ${meta.name}`);
  } else samples = warmup.samples ?? [];
  const out: Tensors[] = [];
  for (const s of samples) {
    try {
      out.push(sampleInputs(meta, s, file));
    } catch {
      // A request that does not fit this model is skipped.
    }
  }
  if (out.length === 0 && !source.payloadLog) out.push(zeroInputs(meta, 1));
  return out;
}
