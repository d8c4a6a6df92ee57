export {
  type Command,
  HTTP_DEFAULTS,
  type KeysCreateOptions,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
  parseCommandLine,
  type ServeOptions,
  UsageError,
} from './args.js';
export type { Output } from './log.js';
export { type MetricsSource, type RunningServer, type ServeHooks, serve } from './serve.js';
