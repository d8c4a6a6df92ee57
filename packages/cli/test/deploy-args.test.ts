import { describe, expect, it } from 'vitest';
import { parseCommandLine, type ServeOptions, UsageError } from '../src/index.js';

const serve = (...args: string[]): ServeOptions => {
  const c = parseCommandLine(['serve', '--model-repository', 'm', ...args]);
  if (c.command !== 'serve') throw new Error('not serve');
  return c.options;
};

describe('deployment options', () => {
  it('--processes takes a count or auto; default is one process', () => {
    expect(serve().processes).toBeUndefined();
    expect(serve('--processes', '3').processes).toBe(3);
    expect(serve('--processes', 'auto').processes).toBe('auto');
    expect(() => serve('--processes', '0')).toThrow(UsageError);
    expect(() => serve('--processes', 'many')).toThrow(/--processes must be an integer of at least 1/);
  });

  it('--metrics-port keeps metrics on and must not clash with the other ports', () => {
    expect(serve('--metrics-port', '8002')).toMatchObject({ metricsPort: 8002, metrics: true });
    expect(() => serve('--metrics-port', '8002', '--no-metrics')).toThrow(/contradict/);
    expect(() => serve('--port', '8000', '--metrics-port', '8000')).toThrow(/must differ/);
    expect(() => serve('--grpc-port', '8001', '--metrics-port', '8001')).toThrow(/must differ/);
  });

  it('--cache-redis takes a redis URL, with the store timeout and prefix', () => {
    expect(
      serve(
        '--cache-redis',
        'redis://127.0.0.1:6379/0',
        '--cache-redis-timeout',
        '20ms',
        '--cache-redis-prefix',
        'p:',
      ),
    ).toMatchObject({
      cacheRedis: 'redis://127.0.0.1:6379/0',
      cacheRedisTimeoutMs: 20,
      cacheRedisPrefix: 'p:',
    });
    expect(() => serve('--cache-redis', 'localhost:6379')).toThrow(/redis:\/\//);
    expect(() => serve('--cache-redis-prefix', 'p:')).toThrow(/need --cache-redis/);
  });
});
