import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, requireService, startRedis } from '../src/index.js';

function roundTrip(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ port, host: '127.0.0.1' }, () => sock.write(command));
    sock.once('data', (d) => {
      sock.destroy();
      resolve(d.toString());
    });
    sock.once('error', reject);
  });
}

const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');

describe('test utilities', () => {
  it('freePort returns a usable port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(1024);
  });

  it.runIf(haveRedis)('startRedis starts a real redis-server that can be killed and restarted', async () => {
    const redis = await startRedis();
    try {
      expect(await roundTrip(redis.port, 'SET k v\r\n')).toBe('+OK\r\n');
      await redis.kill();
      await expect(roundTrip(redis.port, 'PING\r\n')).rejects.toThrow();
      await redis.restart();
      expect(await roundTrip(redis.port, 'PING\r\n')).toBe('+PONG\r\n');
    } finally {
      await redis.stop();
    }
  });
});
