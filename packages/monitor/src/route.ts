import { invalidArgument, notFound } from '@mlserve/core';
import type { FeedbackTarget } from './ingest.js';

/**
 * What a feedback request answers: how many labels joined their prediction, how many found none,
 * and how many were for requests outside the join's sample (see the monitor's
 * `feedback.sampleRate`).
 */
export interface FeedbackResult {
  joined: number;
  unmatched: number;
  skipped: number;
}

/**
 * Handles a feedback request body for a model, whatever the transport: the shape the HTTP route
 * `POST /v2/models/{name}[/versions/{version}]/feedback` (and gRPC) hand over. Throws a ServeError
 * (INVALID_ARGUMENT, NOT_FOUND) the transport turns into its status.
 */
export type FeedbackHandler = (
  model: string,
  version: string | undefined,
  body: unknown,
) => FeedbackResult | Promise<FeedbackResult>;

/** At most this many labels in one request body. */
export const MAX_FEEDBACK_BATCH = 10_000;

function one(target: FeedbackTarget, record: unknown, result: FeedbackResult): void {
  const r = record as { id?: unknown; label?: unknown; target?: unknown };
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || r.id === '')
    throw invalidArgument('feedback: each label needs a non-empty string "id" (the request id)');
  const label = r.label ?? r.target;
  if (label === undefined) throw invalidArgument(`feedback: the label for "${r.id.slice(0, 64)}" is missing`);
  if (target.feedback(r.id, label)) result.joined++;
  else if (target.joins?.(r.id) === false) result.skipped++;
  else result.unmatched++;
}

/**
 * The feedback handler for the HTTP and gRPC servers: routes a body of `{"id": "...", "label": 7}`
 * (`target` for regression, an array label for a batch request) or `{"labels": [{"id", "label"},
 * ...]}` (at most {@link MAX_FEEDBACK_BATCH}) to the monitor of the named model, and answers
 * `{ joined, unmatched, skipped }`. Labels before a bad one in a batch are kept; the bad one is reported.
 *
 * @example
 * ```ts
 * const watch = monitor({ profile, extractors, feedback: {} });
 * const handle = feedbackHandler({ mnist: watch });
 * handle('mnist', undefined, { id: 'req-42', label: 7 }); // { joined: 1, unmatched: 0, skipped: 0 }
 * ```
 */
export function feedbackHandler(
  monitors:
    | Record<string, FeedbackTarget>
    | ((model: string, version: string | undefined) => FeedbackTarget | undefined),
): FeedbackHandler {
  const find =
    typeof monitors === 'function'
      ? monitors
      : (model: string) => (Object.hasOwn(monitors, model) ? monitors[model] : undefined);
  return (model, version, body) => {
    const target = find(model, version);
    if (!target) throw notFound(`no monitor with feedback for model "${model.slice(0, 200)}"`);
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw invalidArgument('feedback: the body must be a JSON object: {"id", "label"} or {"labels": [...]}');
    const result: FeedbackResult = { joined: 0, unmatched: 0, skipped: 0 };
    const labels = (body as { labels?: unknown }).labels;
    if (labels !== undefined && (body as { id?: unknown }).id === undefined) {
      if (!Array.isArray(labels)) throw invalidArgument('feedback: "labels" must be an array');
      if (labels.length > MAX_FEEDBACK_BATCH)
        throw invalidArgument(`feedback: at most ${MAX_FEEDBACK_BATCH} labels per request`);
      for (const [i, record] of labels.entries()) {
        try {
          one(target, record, result);
        } catch (err) {
          if (err instanceof Error)
            err.message = `labels[${i}]: ${err.message} (${result.joined + result.unmatched + result.skipped} before it applied)`;
          throw err;
        }
      }
      return result;
    }
    one(target, body, result);
    return result;
  };
}

/** A model action as the HTTP and gRPC servers call it (`modelActions: { feedback: ... }`). */
export type FeedbackAction = (req: {
  name: string;
  version?: string | undefined;
  body: unknown;
}) => FeedbackResult | Promise<FeedbackResult>;

/**
 * {@link feedbackHandler} in the shape of the servers' model actions: mount it as
 * `modelActions: { feedback: feedbackAction(...) }` and `POST /v2/models/{name}/feedback` routes
 * labels to the model's monitor.
 *
 * @example
 * ```ts
 * const app = Fastify();
 * await app.register(mlservePlugin, { registry, modelActions: { feedback: feedbackAction({ mnist: watch }) } });
 * // POST /v2/models/mnist/feedback {"id": "req-42", "label": 7} -> {"joined": 1, "unmatched": 0, "skipped": 0}
 * ```
 */
export function feedbackAction(monitors: Parameters<typeof feedbackHandler>[0]): FeedbackAction {
  const handle = feedbackHandler(monitors);
  return (req) => handle(req.name, req.version, req.body);
}
