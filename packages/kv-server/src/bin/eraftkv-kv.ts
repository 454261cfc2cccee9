// eraftkv-kv: one member of a kv group. Flags in kv-node-options.ts (or `eraftkv-kv --help`).
// Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 on a fatal failure or a failed start,
// 2 on a bad command line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { installLifecycle, writePidFile } from '@eraftkv/server-kit';
import { jsonLogger } from '@eraftkv/raft-server';
import { ignoredEnvironmentWarning } from '@eraftkv/protocol';
import { KvServer } from '../kv-server';
import { parseKvCommandLine, UsageError, type KvCommandLine } from '../kv-node-options';

function packageVersion(): string {
  // dist/bin/eraftkv-kv.js -> the package's package.json.
  const raw = readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8');
  return (JSON.parse(raw) as { version: string }).version;
}

// grpc-js names the server it dials by its address, and Node warns (DEP0123) when that is an
// IP address (the certificate is still checked against the address, which is what we want):
// the warning would land in the middle of the output (and of JSON logs) on every TLS dial.
process.noDeprecation = true;
async function main(): Promise<void> {
  const version = packageVersion();
  let commandLine: KvCommandLine;
  try {
    commandLine = parseKvCommandLine(process.argv.slice(2), { exitProcess: true, version });
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`eraftkv-kv: ${err.message}\nRun eraftkv-kv --help for the flags.\n`);
    process.exit(2);
  }
  const { server: options, peers } = commandLine;
  const logger = jsonLogger(commandLine.logLevel, { service: 'eraftkv-kv' });
  const ignored = ignoredEnvironmentWarning(commandLine.ignoredEnvironment);
  if (ignored !== '') logger.warn(ignored);
  // The closures below run only after both constants exist.
  const lifecycle = installLifecycle({
    logger,
    stop: () => server.stop(),
    reload: () => server.reloadTls(),
  });
  const server = new KvServer({ ...options, logger, onFatal: (err) => lifecycle.fatal(err) });
  try {
    await server.listen();
    await server.start(peers);
    // <data dir>/eraftkv.pid, removed at exit: how npm start finds a node restarted by hand.
    writePidFile(options.dataDir);
  } catch (err) {
    logger.error('cannot start', { error: (err as Error).message });
    process.exit(1);
  }
  logger.info('eraftkv-kv ready', { version, pid: process.pid });
}

main().catch((err: unknown) => {
  process.stderr.write(`eraftkv-kv: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
