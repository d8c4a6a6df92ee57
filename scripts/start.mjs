#!/usr/bin/env node
// `npm start`: build quietly (one line, the build's output only when it fails), then run
// `mlserve serve` on the bundled model repository with its own output and signals.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);

process.stderr.write('mlserve: building the packages (the first run takes about a minute)...\n');
const started = Date.now();
const build = spawn('npx', ['turbo', 'run', 'build', '--output-logs=errors-only'], {
  cwd: root,
  env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
const log = [];
build.stdout.on('data', (b) => log.push(b));
build.stderr.on('data', (b) => log.push(b));
build.on('close', (code) => {
  if (code !== 0) {
    process.stderr.write(Buffer.concat(log));
    process.stderr.write(`mlserve: the build failed (exit ${code}); its output is above\n`);
    process.exit(code ?? 1);
  }
  if (Date.now() - started > 5000) {
    process.stderr.write(`mlserve: built in ${Math.round((Date.now() - started) / 1000)} s\n`);
  }
  const server = spawn(
    process.execPath,
    [
      'packages/cli/dist/cli.js',
      'serve',
      '--model-repository',
      'packages/examples/model-repository',
      ...args,
    ],
    { cwd: root, stdio: 'inherit' },
  );
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => server.kill(signal));
  }
  server.on('exit', (code, signal) => {
    process.exit(code ?? (signal ? 128 : 1));
  });
});
