/**
 * An open-loop HTTP load generator in its own process (wrk2 is not in Debian): POSTs one body at
 * a fixed rate whatever the latency, each request timed from its scheduled start (so queueing
 * shows in p99 instead of slowing the sender down), over at most `connections` keep-alive
 * sockets. Prints one JSON line: a {@link LoadResult}.
 *
 *   node --import tsx openloop.ts <url> <body file> <headers JSON> <rate/s> <seconds> <connections>
 *
 * The driver is `openLoop` from the harness; only the transport (node:http with a keep-alive
 * agent, cheaper per request than fetch) is added here.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { openLoop } from './harness.js';

const [url, bodyFile, headersJson, rateArg, secondsArg, connectionsArg] = process.argv.slice(2);
if (!url || !bodyFile || !headersJson || !rateArg || !secondsArg || !connectionsArg) {
  process.stderr.write(
    'usage: openloop.ts <url> <body file> <headers JSON> <rate> <seconds> <connections>\n',
  );
  process.exit(2);
}
const body = readFileSync(bodyFile);
const headers = {
  ...(JSON.parse(headersJson) as Record<string, string>),
  'content-length': String(body.byteLength),
};
const agent = new Agent({ keepAlive: true, maxSockets: Number(connectionsArg) });
const target = new URL(url);

/** One POST; rejects on a network error or a status other than 200. */
function post(): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers },
      (res) => {
        res.on('data', () => {});
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const result = await openLoop('open loop', post, {
  rate: Number(rateArg),
  durationMs: Number(secondsArg) * 1000,
  warmupMs: 200,
  maxInFlight: 20_000,
});
agent.destroy();
process.stdout.write(`${JSON.stringify(result)}\n`);
