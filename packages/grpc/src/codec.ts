/**
 * The gRPC message codec lives in `@mlserve/protocol/grpc` (one copy for this server and
 * `@mlserve/client`'s gRPC transport); re-exported here so this package's surface is unchanged.
 */
export {
  CONTENTS_FIELD,
  type ContentsMessage,
  type DecodedInputs,
  decodeInputs,
  encodeOutputs,
  type InferRequestMessage,
  type InferResponseMessage,
  type InputMessage,
  type OutputMessage,
  type ParameterMessage,
  parameterRecord,
  parameterValue,
  parseShapeMessage,
  tensorFromContents,
  tensorToContents,
  toParameterMessage,
} from '@mlserve/protocol/grpc';
