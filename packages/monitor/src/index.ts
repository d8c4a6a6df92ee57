export {
  columns,
  type Extractor,
  extractor,
  type FeatureColumns,
  type FeatureEmit,
  type FeatureKind,
  type FeatureSpec,
  type ImageStatsOptions,
  imageStats,
  predictedClass,
  topScore,
} from './extractors.js';
export {
  type Baseline,
  type BaselineOptions,
  type CusumDesign,
  type DecayEvent,
  designCusum,
  type FeedbackOptions,
  type FeedbackStats,
  FeedbackTracker,
  type Interval,
  joinUnit,
  type LabeledSample,
  measureBaseline,
  type Prediction,
  type QualityReport,
  type Task,
} from './feedback.js';
export {
  type FeedbackReader,
  type FeedbackTarget,
  feedbackFromRedisStream,
  type IngestStats,
  ingestFeedbackFile,
  type RedisFeedbackOptions,
} from './ingest.js';
export {
  type DriftEvent,
  type DriftReport,
  type FeatureScore,
  type Monitor,
  type MonitorClock,
  type MonitorOptions,
  type MonitorStats,
  monitor,
  type ScoreOptions,
  scoreFeatures,
  type Thresholds,
  type WindowOptions,
} from './monitor.js';
export {
  type CategoricalProfile,
  type FeatureProfile,
  loadProfile,
  type NumericProfile,
  type Profile,
  type ProfileOptions,
  type ProfileSample,
  profile,
  saveProfile,
} from './profile.js';
export {
  type FeedbackAction,
  type FeedbackHandler,
  type FeedbackResult,
  feedbackAction,
  feedbackHandler,
} from './route.js';
export {
  type JsonLinesSinkOptions,
  jsonLinesSink,
  type PayloadRecord,
  type PayloadSink,
  type RedisStreamSinkOptions,
  redisStreamSink,
  type SinkStats,
  type StreamClient,
} from './sink.js';
export { bonferroni, holm, psi } from './stats.js';
export { CategoricalWindow, type FeatureWindow, NumericWindow } from './window.js';
