#!/usr/bin/env node
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { HELP, parseCommandLine, UsageError } from './args.js';
import {
  autoProcesses,
  isClusterWorker,
  runClusterWorker,
  startClusterPrimary,
  startMetricsPort,
} from './cluster.js';
import { createKeyCommand } from './keys.js';
import { exitWithParent } from './parent.js';
import { serve } from './serve.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** Runs `mlserve` with `argv` (without node and the script); resolves with the exit status when it returns. */
export async function main(argv: readonly string[]): Promise<number | undefined> {
  let command: ReturnType<typeof parseCommandLine>;
  try {
    command = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`mlserve: ${err.message}\nRun "mlserve --help" for the options.\n`);
      return 2;
    }
    throw err;
  }
  if (command.command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (command.command === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command.command === 'keys-create') {
    const { key, line } = await createKeyCommand(command.options);
    if (command.options.append !== undefined) {
      process.stdout.write(`${key}\n`);
      process.stderr.write(
        `mlserve: key "${command.options.name}" added to ${command.options.append}; the key above is shown only this once\n`,
      );
    } else {
      process.stdout.write(`${key}\n${line}\n`);
      process.stderr.write(
        'mlserve: line 1 is the key (shown only this once: give it to the client); add line 2 to the --auth-keys file\n',
      );
    }
    return 0;
  }
  const options = command.options;
  if (isClusterWorker()) {
    await runClusterWorker(options);
    return undefined;
  }
  const processes = options.processes === 'auto' ? autoProcesses() : (options.processes ?? 1);
  if (processes > 1 && cluster.isPrimary) {
    const primary = startClusterPrimary(options, processes);
    exitWithParent(() => primary.shutdown());
    return primary.done;
  }
  let server: Awaited<ReturnType<typeof serve>>;
  try {
    server = await serve(options);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`mlserve: ${message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`mlserve: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    process.stderr.write(`mlserve: ${signal}: finishing accepted requests, then exiting\n`);
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(
          `mlserve: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`,
        );
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (options.metricsPort !== undefined && server.metrics) {
    startMetricsPort(
      server.metrics,
      options.host,
      options.metricsPort,
      (line) => process.stderr.write(`${line}\n`),
      options.allowedHosts,
    ).unref();
  }
  exitWithParent(() => onSignal('SIGTERM'));
  return undefined;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mlserve: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
