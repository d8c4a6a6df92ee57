/**
 * `@mlserve/protocol`: KServe V2 (the Open Inference Protocol) without a transport. This entry is
 * browser-safe (no Buffer, no `node:` imports): the tensor codec (JSON and the binary tensor
 * extension, both ways, BYTES included), requests and responses for servers and clients, the
 * classification extension and model metadata. The request path servers share (one lookup,
 * validation, deadlines, spans, statistics, the repository extension) is at
 * `@mlserve/protocol/server` (Node only).
 */
export {
  fromV2Datatype,
  MAX_RANK,
  parseShape,
  splitLengthPrefixed,
  tensorDataToJson,
  tensorFromBinary,
  tensorFromJson,
  tensorToBinary,
  tensorToNested,
  V2_DATATYPE,
} from './codec.js';
export {
  classificationLabels,
  classify,
  decodeV2Request,
  decodeV2Response,
  type EncodedMessage,
  type EncodedResponse,
  encodeV2Request,
  encodeV2Response,
  parseHeaderLength,
  parseJson,
  type RequestedOutput,
  type ReservedParameters,
  reservedParameters,
  type V2Request,
  type V2RequestOptions,
  type V2Response,
  v2ModelMetadata,
} from './v2.js';
