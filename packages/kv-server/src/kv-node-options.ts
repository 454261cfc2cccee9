// The eraftkv-kv command line: server-kit's common node flags plus the kv flags of
// docs/servers-contract.md, parsed with yargs 17 (every flag may also come from ERAFTKV_<NAME>).
// Parsing is separate from the binary so that tests can check what is refused and why.
import yargs from 'yargs';
import {
  commonNodeOptions,
  configFileDescription,
  loadConfigFile,
  nodeAddressing,
  parsePeerRoutes,
  parsePeers,
  peersMissingSelf,
  raftTuningOf,
  splitHostPort,
  tlsFlagsOf,
  validateCommonArgs,
  type NodeAddressing,
} from '@eraftkv/server-kit';
import { type LogLevel } from '@eraftkv/raft-server';
import { type Member } from '@eraftkv/raft';
import { hideUnknownEnvironment } from '@eraftkv/protocol';
import type { KvServerOptions } from './kv-server';
import { watchHistoryRevisionsDefault } from './data-state-machine';
import { defaultWatchLimits } from './watch-service';
import {
  kvLimits,
  responseBytesMaxDefault,
  scanRequestsInFlightMaxDefault,
} from './request-validation';

export const kvNodeOptions = {
  group: {
    type: 'number',
    describe: 'The kv group (shard group) this node belongs to (1 or more)',
    demandOption: true,
  },
  meta: {
    type: 'string',
    describe: "The meta group's gRPC addresses as host:port,...",
    demandOption: true,
  },
  'verify-state-on-start': {
    type: 'boolean',
    describe:
      'Read the whole kv state once at start (RocksDB checks every block against its checksum) and refuse to start on a damaged one, naming the file. Costs a full read of the data dir at every start',
    default: true,
    group: 'Kv:',
  },
  'consistency-check-interval-ms': {
    type: 'number',
    describe:
      'How often the group leader checks that every replica holds the same state (a check entry in the log; each replica digests its state at it). A replica that differs is named in an error log and in eraftkv_server_replica_digest_mismatch. 0: never',
    default: 300_000,
    group: 'Kv:',
  },
  'config-poll-ms': {
    type: 'number',
    describe: 'How often the group leader reads the topology from the meta group',
    default: 500,
    group: 'Kv:',
  },
  'key-bytes-max': {
    type: 'number',
    describe: 'The longest key accepted',
    default: 4096,
    group: 'Kv:',
  },
  'value-bytes-max': {
    type: 'number',
    describe: 'The longest value accepted',
    default: 1048576,
    group: 'Kv:',
  },
  'ops-per-request-max': {
    type: 'number',
    describe: 'The most operations in one request',
    default: 128,
    group: 'Kv:',
  },
  'scan-limit-max': {
    type: 'number',
    describe: 'The most pairs one Scan returns',
    default: 10000,
    group: 'Kv:',
  },
  'response-bytes-max': {
    type: 'number',
    describe:
      'The most bytes one read request returns across its ops (a Scan that reaches it stops early with `more`)',
    default: responseBytesMaxDefault,
    group: 'Kv:',
  },
  'scan-requests-in-flight-max': {
    type: 'number',
    describe: 'Read requests with a Scan served at once; more are refused with RESOURCE_EXHAUSTED',
    default: scanRequestsInFlightMaxDefault,
    group: 'Kv:',
  },
  'dedup-window-entries': {
    type: 'number',
    describe:
      'Retried writes (same client_id and command_id) within this many log entries return the stored answer; must be equal on every member',
    default: 100000,
    group: 'Kv:',
  },
  'lease-ttl-max-seconds': {
    type: 'number',
    describe: 'The longest TTL a lease is granted with',
    default: 365 * 24 * 3600,
    group: 'Kv:',
  },
  'watch-history-revisions': {
    type: 'number',
    describe:
      "Watches may start from (and resume at) any of the group's last this many revisions; older ones are answered compacted. 0 keeps none (watches start from now). Must be equal on every member",
    default: watchHistoryRevisionsDefault,
    group: 'Watch:',
  },
  'watch-stream-buffer-bytes': {
    type: 'number',
    describe:
      'Bytes of events one watch stream may have waiting for its reader; a slower reader is cut with RESOURCE_EXHAUSTED (it resumes from its last revision)',
    default: defaultWatchLimits.streamBufferBytes,
    group: 'Watch:',
  },
  'watches-max': {
    type: 'number',
    describe: 'Watch streams this node serves at once; more are refused with RESOURCE_EXHAUSTED',
    default: defaultWatchLimits.watchesMax,
    group: 'Watch:',
  },
  'watch-progress-interval-ms': {
    type: 'number',
    describe:
      'A watch that asked for progress notifications gets one (its revision) when nothing was sent to it for this long',
    default: defaultWatchLimits.progressIntervalMs,
    group: 'Watch:',
  },
} as const;

/** A command line that cannot run; the binary prints the message and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface KvCommandLine {
  readonly server: Omit<KvServerOptions, 'logger'>;
  /** The bootstrap members from --peers (empty: join an existing group). */
  readonly peers: Member[];
  readonly logLevel: LogLevel;
  /** ERAFTKV_* variables that name no flag (ignored; the binary warns about them). */
  readonly ignoredEnvironment: string[];
}

// One flag per line: the command is too long for yargs' two-column example table.
const example = [
  'Example: node 1 of kv group 1 of the local cluster',
  '  eraftkv-kv --id 1 --group 1 --listen 127.0.0.1:7088 \\',
  '    --peers 1=127.0.0.1:7088,2=127.0.0.1:7089,3=127.0.0.1:7090 \\',
  '    --meta 127.0.0.1:8088,127.0.0.1:8089,127.0.0.1:8090 \\',
  '    --data-dir ./data/kv-1-1 --metrics-listen 127.0.0.1:9288',
].join('\n');

/**
 * Parses `argv` (without the node and script names). --help and --version print and, with
 * `exitProcess`, exit 0; anything wrong throws a UsageError that names the flag.
 */
export function parseKvCommandLine(
  argv: readonly string[],
  options: { readonly exitProcess: boolean; readonly version: string },
): KvCommandLine {
  const environment = hideUnknownEnvironment([
    ...Object.keys(commonNodeOptions),
    ...Object.keys(kvNodeOptions),
    'config-file',
  ]);
  try {
    return kvCommandLine(argv, options, environment.ignored);
  } finally {
    environment.restore();
  }
}

function kvCommandLine(
  argv: readonly string[],
  options: { readonly exitProcess: boolean; readonly version: string },
  ignoredEnvironment: string[],
): KvCommandLine {
  const args = yargs([...argv])
    .scriptName('eraftkv-kv')
    .usage('$0 [options]\n\nA kv server: one member of a kv group (shard group) of eraftkv.')
    .options(commonNodeOptions)
    .options(kvNodeOptions)
    .config('config-file', configFileDescription, (path: string) =>
      loadConfigFile(path, { ...commonNodeOptions, ...kvNodeOptions }),
    )
    .env('ERAFTKV')
    .epilogue(example)
    .strict()
    .version(options.version)
    .help()
    .alias('help', 'h')
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .exitProcess(options.exitProcess)
    .fail((message: string | undefined, err: Error | undefined) => {
      throw new UsageError(message ?? err?.message ?? 'invalid command line');
    })
    .parseSync();
  // yargs turns a repeated flag into an array; which one was meant is anyone's guess.
  for (const name of [...Object.keys(commonNodeOptions), ...Object.keys(kvNodeOptions)]) {
    if (Array.isArray((args as Record<string, unknown>)[name]))
      throw new UsageError(`--${name} is given more than once`);
  }
  try {
    validateCommonArgs(args);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const positive: [string, number][] = [
    ['--group', args.group],
    ['--config-poll-ms', args.configPollMs],
    ['--key-bytes-max', args.keyBytesMax],
    ['--value-bytes-max', args.valueBytesMax],
    ['--ops-per-request-max', args.opsPerRequestMax],
    ['--scan-limit-max', args.scanLimitMax],
    ['--response-bytes-max', args.responseBytesMax],
    ['--scan-requests-in-flight-max', args.scanRequestsInFlightMax],
    ['--dedup-window-entries', args.dedupWindowEntries],
    ['--shutdown-grace-ms', args.shutdownGraceMs],
    ['--watch-stream-buffer-bytes', args.watchStreamBufferBytes],
    ['--watches-max', args.watchesMax],
    ['--lease-ttl-max-seconds', args.leaseTtlMaxSeconds],
    ['--watch-progress-interval-ms', args.watchProgressIntervalMs],
  ];
  for (const [flag, value] of positive) {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new UsageError(`${flag} must be a positive integer, got ${value}`);
  }
  if (!Number.isSafeInteger(args.consistencyCheckIntervalMs) || args.consistencyCheckIntervalMs < 0)
    throw new UsageError(
      `--consistency-check-interval-ms must be 0 (never) or a positive integer, got ${args.consistencyCheckIntervalMs}`,
    );
  if (!Number.isSafeInteger(args.watchHistoryRevisions) || args.watchHistoryRevisions < 0)
    throw new UsageError(
      `--watch-history-revisions must be 0 (none) or a positive integer, got ${args.watchHistoryRevisions}`,
    );
  const ceilings: [string, number, number][] = [
    ['--key-bytes-max', args.keyBytesMax, 64 * 1024],
    ['--value-bytes-max', args.valueBytesMax, 16 * 1024 * 1024],
    ['--ops-per-request-max', args.opsPerRequestMax, 10_000],
    ['--scan-limit-max', args.scanLimitMax, 1_000_000],
    ['--response-bytes-max', args.responseBytesMax, 256 * 1024 * 1024],
    ['--scan-requests-in-flight-max', args.scanRequestsInFlightMax, 10_000],
    ['--dedup-window-entries', args.dedupWindowEntries, 100_000_000],
    ['--watch-history-revisions', args.watchHistoryRevisions, 100_000_000],
    ['--watch-stream-buffer-bytes', args.watchStreamBufferBytes, 1024 * 1024 * 1024],
    ['--watches-max', args.watchesMax, 1_000_000],
    ['--lease-ttl-max-seconds', args.leaseTtlMaxSeconds, 0xffff_ffff],
    ['--watch-progress-interval-ms', args.watchProgressIntervalMs, 24 * 3600 * 1000],
  ];
  for (const [flag, value, max] of ceilings) {
    if (value > max) throw new UsageError(`${flag} must be at most ${max}, got ${value}`);
  }
  let peers: Member[];
  let metaAddresses: string[];
  let peerRoutes: Map<number, string>;
  let addressing: NodeAddressing;
  try {
    peerRoutes = parsePeerRoutes(args.peerRoute);
    peers = parsePeers(args.peers);
    metaAddresses = args.meta
      .split(',')
      .map((a) => a.trim())
      .filter((a) => a !== '');
    for (const address of metaAddresses) splitHostPort(address, '--meta');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (metaAddresses.length === 0) throw new UsageError('--meta must name at least one host:port');
  const missingSelf = peersMissingSelf(peers, args.id);
  if (missingSelf !== null) throw new UsageError(missingSelf);
  try {
    addressing = nodeAddressing(args, peers);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    peers,
    logLevel: args.logLevel,
    ignoredEnvironment,
    server: {
      id: args.id,
      groupId: args.group,
      listen: args.listen,
      advertise: addressing.advertise,
      metricsAdvertise: addressing.metricsAdvertise,
      metaAddresses,
      dataDir: args.dataDir,
      metricsListen: args.metricsListen,
      enablePprof: args.enablePprof,
      clusterId: args.clusterId,
      raft: raftTuningOf(args, peerRoutes),
      tls: tlsFlagsOf(args),
      shutdownGraceMs: args.shutdownGraceMs,
      configPollMs: args.configPollMs,
      consistencyCheckIntervalMs: args.consistencyCheckIntervalMs,
      verifyStateOnStart: args.verifyStateOnStart,
      dedupWindowEntries: args.dedupWindowEntries,
      watchHistoryRevisions: args.watchHistoryRevisions,
      leaseTtlMaxSeconds: args.leaseTtlMaxSeconds,
      watchLimits: {
        streamBufferBytes: args.watchStreamBufferBytes,
        watchesMax: args.watchesMax,
        progressIntervalMs: args.watchProgressIntervalMs,
      },
      limits: kvLimits({
        keyBytesMax: args.keyBytesMax,
        valueBytesMax: args.valueBytesMax,
        opsPerRequestMax: args.opsPerRequestMax,
        scanLimitMax: args.scanLimitMax,
        responseBytesMax: args.responseBytesMax,
        scanRequestsInFlightMax: args.scanRequestsInFlightMax,
      }),
      version: options.version,
    },
  };
}
