/**
 * `mlserve serve` features that only the CLI wires up: TLS (HTTPS with a certificate made by
 * openssl; plain HTTP and garbage on the TLS port), rollout routes (promote and reject of versions
 * that are not in a rollout), and flag mistakes that must stop the server before it starts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireService } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CliServer,
  check,
  describeReply,
  digitRequest,
  errorCode,
  type Reply,
  send,
  startCli,
} from './helpers.js';

const CLI = fileURLToPath(new URL('../../cli/dist/cli.js', import.meta.url));
const INFER = '/v2/models/mnist/infer';
const JSON_CT = { 'content-type': 'application/json' };

/** One HTTPS request trusting only `ca`. */
function httpsSend(url: string, path: string, ca: Buffer, body?: string): Promise<Reply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        hostname,
        port,
        path,
        method: body === undefined ? 'GET' : 'POST',
        headers: body === undefined ? {} : JSON_CT,
        ca,
        agent: false,
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `bytes` on a raw connection; resolves with what came back once either side closes. */
function rawBytes(url: string, bytes: Buffer): Promise<{ text: string; error?: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    let text = '';
    let error: string | undefined;
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    socket.setTimeout(15_000, () => socket.destroy(new Error('still open after 15 s')));
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('error', (err) => {
      error = (err as NodeJS.ErrnoException).code ?? err.message;
    });
    socket.on('close', () => resolve({ text, ...(error && { error }) }));
  });
}

describe('mlserve serve with TLS', () => {
  let dir: string;
  let cli: CliServer;
  let ca: Buffer;

  beforeAll(async () => {
    requireService('openssl', 'apt-get install -y openssl');
    dir = mkdtempSync(join(tmpdir(), 'mlserve-rel-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(join(dir, 'cert.pem'));
    cli = await startCli(['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
  });
  afterAll(async () => {
    await cli?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves HTTPS, and survives plain HTTP and garbage on the TLS port', async () => {
    await check(
      {
        area: 'TLS',
        name: 'HTTPS; plain HTTP and garbage on the TLS port',
        adapter: 'cli',
        sent: '`mlserve serve --tls-cert --tls-key` (an openssl self-signed certificate): a V2 request over HTTPS trusting it; a plain HTTP request to the same port; 4 KiB of random bytes; then HTTPS again',
      },
      async (row) => {
        const first = await httpsSend(cli.url, INFER, ca, JSON.stringify(digitRequest(0)));
        const plainReply = await send(cli.url.replace('https:', 'http:'), '/v2/health/ready').catch(
          (e: Error) => e,
        );
        const plain =
          plainReply instanceof Error
            ? `error ${(plainReply as NodeJS.ErrnoException).code ?? plainReply.message}`
            : `${plainReply.status} ${plainReply.text.slice(0, 40)}`;
        const garbage = await rawBytes(
          cli.url,
          Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
        );
        const again = await httpsSend(cli.url, INFER, ca, JSON.stringify(digitRequest(1)));
        row.got = `HTTPS ${first.status} (url ${cli.url.split(':')[0]}); plain HTTP: ${plain}; random bytes: closed${garbage.error ? ` (${garbage.error})` : ''} after ${garbage.text.length} bytes back; HTTPS again ${again.status}`;
        expect(cli.url.startsWith('https://')).toBe(true);
        expect(first.status).toBe(200);
        expect(plainReply instanceof Error || plainReply.status >= 400).toBe(true);
        expect(again.status).toBe(200);
        expect(cli.child.exitCode).toBeNull();
      },
    );
  });
});

describe('mlserve serve: rollout routes and flag mistakes', () => {
  let cli: CliServer;
  beforeAll(async () => {
    cli = await startCli(['--management']);
  });
  afterAll(() => cli?.stop());

  const routes: { name: string; path: string; status: number; code: string; body?: string }[] = [
    {
      name: 'promote a version that does not exist',
      path: '/v2/repository/models/mnist/versions/99/promote',
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'reject a version in no rollout',
      path: '/v2/repository/models/mnist/versions/1/reject',
      status: 400,
      code: '',
      body: '{"reason": "test"}',
    },
    {
      name: 'promote a version of a model that does not exist',
      path: '/v2/repository/models/nope/versions/1/promote',
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'promote with a traversal in the version',
      path: '/v2/repository/models/mnist/versions/..%2F..%2Fetc/promote',
      status: 400,
      code: '',
    },
  ];
  for (const r of routes) {
    it(r.name, async () => {
      await check(
        { area: 'Rollout routes', name: r.name, adapter: 'cli', sent: `POST ${r.path} (\`--management\`)` },
        async (row) => {
          const reply = await send(cli.url, r.path, {
            method: 'POST',
            headers: JSON_CT,
            body: r.body ?? '{}',
          });
          const after = await send(cli.url, INFER, {
            headers: JSON_CT,
            body: JSON.stringify(digitRequest(0)),
          });
          row.got = `${describeReply(reply)}; mnist still serves: ${after.status}`;
          if (r.status === 400) {
            expect(reply.status).toBeGreaterThanOrEqual(400);
            expect(reply.status).toBeLessThan(500);
          } else expect(reply.status).toBe(r.status);
          if (r.code) expect(errorCode(reply)).toBe(r.code);
          else expect(errorCode(reply)).toBeTruthy();
          expect(after.status).toBe(200);
        },
      );
    });
  }

  const mistakes: { name: string; flags: string[] }[] = [
    { name: '--model-memory-budget lots', flags: ['--model-memory-budget', 'lots'] },
    { name: '--headers-timeout longer than --request-timeout', flags: ['--headers-timeout', '2m'] },
    { name: '--body-limit 0', flags: ['--body-limit', '0'] },
    { name: '--tls-cert without --tls-key', flags: ['--tls-cert', '/nonexistent.pem'] },
    { name: '--auth-keys of a missing file', flags: ['--auth-keys', '/nonexistent-keys.jsonl'] },
  ];
  for (const m of mistakes) {
    it(`refuses ${m.name}`, async () => {
      await check(
        {
          area: 'CLI flags',
          name: m.name,
          adapter: 'cli',
          sent: `mlserve serve --model-repository <dir> ${m.flags.join(' ')}`,
        },
        async (row) => {
          const r = spawnSync(
            process.execPath,
            [CLI, 'serve', '--model-repository', tmpdir(), '--port', '0', ...m.flags],
            {
              encoding: 'utf8',
              timeout: 60_000,
            },
          );
          const said = `${r.stderr}${r.stdout}`.trim().split('\n')[0] ?? '';
          row.got = `exit ${r.status}: ${said.slice(0, 140)}`;
          expect(r.status).not.toBe(0);
          expect(r.status).not.toBeNull();
          expect(said).not.toMatch(/listening on/);
          expect(`${r.stderr}${r.stdout}`).not.toMatch(/^\s+at /m);
        },
      );
    });
  }
});
