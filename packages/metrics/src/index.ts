export { type MetricsOptions, metrics, metricsText } from './metrics.js';
