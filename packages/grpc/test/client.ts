import * as grpc from '@grpc/grpc-js';
import { loadInferenceProto } from '../src/proto.js';

/** A gRPC status error as grpc-js reports it. */
export type CallError = grpc.ServiceError;

/** A promise-style client for the tests, built from the same proto as the server. */
export function connect(
  port: number,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  host = '127.0.0.1',
) {
  const { GRPCInferenceService } = loadInferenceProto();
  const client = new GRPCInferenceService(`${host}:${port}`, credentials, {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  type Unary = (
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res: unknown) => void,
  ) => grpc.ClientUnaryCall;
  function call<T = Record<string, unknown>>(
    method: string,
    req: unknown,
    opts: { deadlineMs?: number; metadata?: grpc.Metadata; onCall?: (c: grpc.ClientUnaryCall) => void } = {},
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
      const options: grpc.CallOptions = {};
      if (opts.deadlineMs !== undefined) options.deadline = Date.now() + opts.deadlineMs;
      const c = fn(req, opts.metadata ?? new grpc.Metadata(), options, (err, res) =>
        err ? reject(err) : resolve(res as T),
      );
      opts.onCall?.(c);
    });
  }
  function stream(): grpc.ClientDuplexStream<unknown, Record<string, unknown>> {
    return (
      client as unknown as {
        ModelStreamInfer: () => grpc.ClientDuplexStream<unknown, Record<string, unknown>>;
      }
    ).ModelStreamInfer();
  }
  return { client, call, stream, close: () => client.close() };
}

/** The rejection of `promise` (fails the test when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}
