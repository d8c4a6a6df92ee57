import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseDuration, UsageError } from '../src/args.js';

describe('parseCommandLine', () => {
  it('fills the defaults: loopback, port 8000, placement left to the repository, 5 s polling, metrics on, no management', () => {
    expect(parseCommandLine(['serve', '--model-repository', 'models'])).toEqual({
      command: 'serve',
      options: {
        modelRepository: 'models',
        port: 8000,
        host: '127.0.0.1',
        pollIntervalMs: 5000,
        metrics: true,
        logLevel: 'info',
        management: false,
        noWarmup: false,
        shutdownDelayMs: 0,
      },
    });
  });

  it('reads every option', () => {
    const c = parseCommandLine([
      'serve',
      '--model-repository=m',
      '--port',
      '0',
      '--grpc-port',
      '8001',
      '--host',
      '0.0.0.0',
      '--workers',
      '3',
      '--poll-interval',
      '250ms',
      '--metrics',
      '--log-level',
      'debug',
      '--log-format',
      'pretty',
      '--intra-op-threads',
      '2',
      '--management',
      '--no-warmup',
      '--shutdown-delay',
      '2s',
    ]);
    expect(c).toEqual({
      command: 'serve',
      options: {
        modelRepository: 'm',
        port: 0,
        grpcPort: 8001,
        host: '0.0.0.0',
        workers: 3,
        pollIntervalMs: 250,
        metrics: true,
        logLevel: 'debug',
        logFormat: 'pretty',
        intraOpThreads: 2,
        management: true,
        noWarmup: true,
        shutdownDelayMs: 2000,
      },
    });
  });

  it('--no-metrics turns the default metrics off; --metrics is still accepted', () => {
    const opts = (...a: string[]) =>
      (parseCommandLine(['serve', '--model-repository', 'm', ...a]) as { options: { metrics: boolean } })
        .options;
    expect(opts('--no-metrics').metrics).toBe(false);
    expect(opts('--metrics').metrics).toBe(true);
    expect(opts('--log-format', 'json')).toMatchObject({ logFormat: 'json' });
  });

  it('answers --help, help and --version', () => {
    expect(parseCommandLine(['--help'])).toEqual({ command: 'help' });
    expect(parseCommandLine(['serve', '-h'])).toEqual({ command: 'help' });
    expect(parseCommandLine(['help', 'serve'])).toEqual({ command: 'help', topic: 'serve' });
    expect(parseCommandLine(['-v'])).toEqual({ command: 'version' });
  });

  it('rejects mistakes with a UsageError that says what is wrong', () => {
    const bad: [string[], RegExp][] = [
      [[], /no command given/],
      [['serve', '--model-repository', 'm', '--port', '70000'], /--port must be at most 65535/],
      [['serve', '--model-repository', 'm', '--port', '-1'], /--port/],
      [['serve', '--model-repository', 'm', '--workers', '1.5'], /--workers must be an integer/],
      [
        ['serve', '--model-repository', 'm', '--intra-op-threads', '0'],
        /--intra-op-threads must be an integer of at least 1/,
      ],
      [['serve', '--model-repository', 'm', '--log-level', 'loud'], /--log-level must be one of/],
      [
        ['serve', '--model-repository', 'm', '--log-format', 'xml'],
        /--log-format must be one of json, pretty/,
      ],
      [['serve', '--model-repository', 'm', '--metrics', '--no-metrics'], /contradict/],
      [['serve', '--model-repository', 'm', 'extra'], /unexpected argument "extra"/],
      [['serve', '--port'], /--port/],
      [['serve', '--model-repository', 'm', '--grpc-port', '65536'], /--grpc-port must be at most 65535/],
      [['serve', '--model-repository', 'm', '--grpc-port', 'x'], /--grpc-port must be an integer/],
      [['serve', '--model-repository', 'm', '--grpc-port', '8000'], /--grpc-port must differ from --port/],
      [
        ['serve', '--model-repository', 'm', '--model-memory-budget', 'lots'],
        /--model-memory-budget "lots" is not a size such as 2GiB/,
      ],
    ];
    for (const [args, message] of bad) {
      expect(() => parseCommandLine(args), args.join(' ')).toThrow(UsageError);
      expect(() => parseCommandLine(args)).toThrow(message);
    }
  });
});

describe('parseDuration', () => {
  it('reads ms, s, m and bare milliseconds', () => {
    expect(parseDuration('500ms', 'x')).toBe(500);
    expect(parseDuration('5s', 'x')).toBe(5000);
    expect(parseDuration('1.5s', 'x')).toBe(1500);
    expect(parseDuration('2m', 'x')).toBe(120_000);
    expect(parseDuration('0', 'x')).toBe(0);
    expect(() => parseDuration('5 hours', '--poll-interval')).toThrow(/--poll-interval must be a duration/);
  });
});
