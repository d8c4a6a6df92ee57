export {
  AUTH_SCOPES,
  type AuthScope,
  corsPolicy,
  createAuthenticator,
  createKey,
  keyDigest,
  parseKeys,
  type RateLimit,
  readKeysFile,
  type StoredKey,
} from '@mlserve/protocol/server';
export { type MlserveRouterOptions, mlserveRouter } from './express.js';
export { type MlservePluginOptions, mlservePlugin } from './fastify.js';
export {
  type Authenticator,
  type AuthOptions,
  type CorsOptions,
  type CrossOriginOptions,
  createProtocol,
  decodeBody,
  errorResponse,
  genRequestId,
  type Logger,
  type ManagementOptions,
  type MetricsSource,
  type MlserveHttpOptions,
  type Protocol,
  type ProtocolRequest,
  type ProtocolResponse,
  requestIdOf,
} from './protocol.js';
export { decodePredict, encodePredict, type PredictRequest } from './tfserving.js';
