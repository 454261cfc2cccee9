// eraftkv-meta: one node of the meta group. Flags are in ../cli-options.ts; the node itself is
// MetaServer. Logs one JSON line per event on stderr; SIGTERM/SIGINT stop it gracefully (exit 0),
// a fatal Raft failure exits 1, bad flags exit 2.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  advertisedAddressProblem,
  installLifecycle,
  raftTuningOf,
  tlsFlagsOf,
  writePidFile,
} from '@eraftkv/server-kit';
import { ignoredEnvironmentWarning } from '@eraftkv/protocol';
import { jsonLogger } from '@eraftkv/raft-server';
import { parseMetaArgs } from '../cli-options';
import { MetaServer } from '../meta-server';

function packageVersion(): string {
  // From dist/bin or src/bin alike, the package root is two levels up.
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? '0.0.0';
}

// grpc-js names the server it dials by its address, and Node warns (DEP0123) when that is an
// IP address (the certificate is still checked against the address, which is what we want):
// the warning would land in the middle of the output (and of JSON logs) on every TLS dial.
process.noDeprecation = true;
async function main(): Promise<void> {
  const version = packageVersion();
  const parsed = parseMetaArgs(process.argv.slice(2), version);
  if (parsed.kind === 'exit') {
    (parsed.code === 0 ? process.stdout : process.stderr).write(parsed.output);
    process.exitCode = parsed.code;
    return;
  }
  const args = parsed.args;
  const logger = jsonLogger(args.logLevel, { service: 'eraftkv-meta' });
  const ignored = ignoredEnvironmentWarning(args.ignoredEnvironment);
  if (ignored !== '') logger.warn(ignored);
  // The closures below run only after both constants exist.
  const lifecycle = installLifecycle({
    logger,
    stop: () => server.stop(),
    reload: () => server.reloadTls(),
  });
  const server = new MetaServer({
    id: args.id,
    listen: args.listen,
    dataDir: args.dataDir,
    metricsListen: args.metricsListen,
    enablePprof: args.enablePprof,
    clusterId: args.clusterId,
    logger,
    raft: raftTuningOf(args, args.peerRoutes),
    shutdownGraceMs: args.shutdownGraceMs,
    dedupWindowEntries: args.dedupWindowEntries,
    slotMoveDeadlineMs: args.slotMoveDeadlineMs,
    slotImportDeadlineMs: args.slotImportDeadlineMs,
    slotMoveBatchSlots: args.slotMoveBatchSlots,
    tls: tlsFlagsOf(args),
    version,
    onFatal: (err) => lifecycle.fatal(err),
  });
  try {
    const { address, metricsAddress } = await server.listen();
    await server.start(args.peerList);
    // <data dir>/eraftkv.pid, removed at exit: how npm start finds a node restarted by hand.
    writePidFile(args.dataDir);
    const status = server.raft.status();
    logger.info('started', {
      id: args.id,
      listen: address,
      advertise: args.advertise,
      metrics: metricsAddress,
      metricsAdvertise: args.metricsAdvertise,
      dataDir: args.dataDir,
      members: status.membership.map((m) => `${m.id}=${m.address}`).join(','),
      version,
    });
    const moved = advertisedAddressProblem(status.membership, args.id, args.advertise);
    if (moved !== null) logger.warn(moved);
  } catch (err) {
    logger.error('cannot start', { error: (err as Error).message });
    await server.abort().catch(() => undefined);
    process.exit(1);
  }
}

void main();
