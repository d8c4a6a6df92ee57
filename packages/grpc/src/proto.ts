import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * Where `grpc_service.proto` lies: `@mlserve/protocol` ships it (the one copy the server and
 * `@mlserve/client` both load; exported there as `@mlserve/protocol/proto/grpc_service.proto`).
 */
export const PROTO_PATH: string = createRequire(import.meta.url).resolve(
  '@mlserve/protocol/proto/grpc_service.proto',
);

/**
 * How the proto is loaded, on the server and in the tests' client alike: field names as written
 * (`model_name`), 64-bit integers as decimal strings (exact for every int64 / uint64, unlike JS
 * numbers), enums as names, unset fields filled with their defaults, and a virtual field naming
 * which member of each oneof is set (`parameter_choice: 'int64_param'`).
 */
export const LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

let cached: grpc.GrpcObject | undefined;

/**
 * The loaded `inference` package: `inference.GRPCInferenceService` is the service constructor
 * (a client class; `.service` is the definition a server adds).
 *
 * @example
 * ```ts
 * import * as grpc from '@grpc/grpc-js';
 * import { loadInferenceProto } from '@mlserve/grpc';
 * const { GRPCInferenceService } = loadInferenceProto();
 * const client = new GRPCInferenceService('127.0.0.1:8001', grpc.credentials.createInsecure());
 * client.ServerLive({}, (err, res) => console.log(res.live));
 * ```
 */
export function loadInferenceProto(): {
  GRPCInferenceService: grpc.ServiceClientConstructor;
} {
  cached ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS));
  const pkg = cached.inference as grpc.GrpcObject;
  return { GRPCInferenceService: pkg.GRPCInferenceService as grpc.ServiceClientConstructor };
}
