export { LOADER_OPTIONS, loadInferenceProto, PROTO_PATH } from './proto.js';
export {
  createGrpcServer,
  type GrpcServerOptions,
  type GrpcServing,
  inferenceService,
  type ServeGrpcOptions,
  serveGrpc,
} from './server.js';
