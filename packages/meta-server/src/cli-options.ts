// The eraftkv-meta command line: the flags both server binaries share (commonNodeOptions) plus
// the meta server's own, parsed with yargs 17 and `.env('ERAFTKV')` (so ERAFTKV_DATA_DIR sets
// --data-dir). Parsing never exits the process: it says what to print and with which exit code,
// so that a test can check --help and every refusal without spawning anything.
import yargs from 'yargs';
import {
  commonNodeOptions,
  configFileDescription,
  loadConfigFile,
  nodeAddressing,
  parsePeerRoutes,
  parsePeers,
  peersMissingSelf,
  validateCommonArgs,
  type CommonNodeArgs,
  type NodeAddressing,
} from '@eraftkv/server-kit';
import { type Member } from '@eraftkv/raft';
import { hideUnknownEnvironment } from '@eraftkv/protocol';
import { dedupWindowEntriesDefault, dedupWindowEntriesMax } from './topology';

const metaOptions = {
  'dedup-window-entries': {
    type: 'number',
    describe:
      'How many (client_id, command_id) requests the topology remembers, recorded by ClusterInit',
    default: dedupWindowEntriesDefault,
    group: 'Meta:',
  },
  'slot-move-deadline-ms': {
    type: 'number',
    describe: 'How long a slot move waits for the source group to freeze its slots',
    default: 5000,
    group: 'Meta:',
  },
  'slot-move-batch-slots': {
    type: 'number',
    describe:
      'The most slots a move freezes and copies at once: writes to a slot wait for the copy of its batch only',
    default: 64,
    group: 'Meta:',
  },
  'slot-import-deadline-ms': {
    type: 'number',
    describe:
      'How long the copy of one batch of moving slots into its target may take before the move is rolled back',
    default: 600_000,
    group: 'Meta:',
  },
} as const;

/** Everything eraftkv-meta runs with, checked. */
export interface MetaArgs extends CommonNodeArgs, NodeAddressing {
  /** The parsed --peers (empty: join an existing group, or use the stored membership). */
  readonly peerList: Member[];
  /** The parsed --peer-route: peers to dial through other addresses. */
  readonly peerRoutes: Map<number, string>;
  readonly dedupWindowEntries: number;
  readonly slotMoveDeadlineMs: number;
  readonly slotImportDeadlineMs: number;
  readonly slotMoveBatchSlots: number;
  /** ERAFTKV_* variables that name no flag (ignored; the binary warns about them). */
  readonly ignoredEnvironment: string[];
}

export type ParsedMetaArgs =
  | { readonly kind: 'run'; readonly args: MetaArgs }
  /** Print `output` (stdout for code 0, stderr otherwise) and exit with `code`. */
  | { readonly kind: 'exit'; readonly code: number; readonly output: string };

/** Exit code for bad flags (yargs' own convention is 1; ours, like many daemons', is 2). */
export const badUsageExitCode = 2;

function usageError(message: string): ParsedMetaArgs {
  return {
    kind: 'exit',
    code: badUsageExitCode,
    output: `eraftkv-meta: ${message}\nRun "eraftkv-meta --help" for the flags.\n`,
  };
}

function positiveInteger(flag: string, value: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) {
    throw new Error(`${flag} must be an integer in [1, ${max}], got ${value}`);
  }
}

export function parseMetaArgs(argv: readonly string[], version: string): ParsedMetaArgs {
  const parser = yargs()
    .scriptName('eraftkv-meta')
    .usage(
      '$0 --id N --listen HOST:PORT --data-dir DIR [--peers ID=HOST:PORT,...]\n\n' +
        'Runs one node of the eraftkv meta group (group 0): the cluster topology (shard groups, ' +
        'slot owners, config version), replicated with Raft. Every flag can also be set as ' +
        'ERAFTKV_<FLAG> in the environment (for example ERAFTKV_DATA_DIR).',
    )
    .options(commonNodeOptions)
    .options(metaOptions)
    .config('config-file', configFileDescription, (path: string) =>
      loadConfigFile(path, { ...commonNodeOptions, ...metaOptions }),
    )
    .env('ERAFTKV')
    .example(
      '$0 --id 1 --listen 127.0.0.1:8088 --peers 1=127.0.0.1:8088,2=127.0.0.1:8089,3=127.0.0.1:8090 --data-dir ./data/meta-1 --metrics-listen 127.0.0.1:9188',
      'Start node 1 of a new three-node meta group (the other two get --id 2 and 3)',
    )
    .example(
      '$0 --id 4 --listen 127.0.0.1:8091 --data-dir ./data/meta-4',
      'Start an empty node that waits to be added (ClusterConfigChange ServerJoin, or eraftkv-ctl member add --group 0)',
    )
    .strict()
    .version(version)
    .help()
    .alias('h', 'help')
    .wrap(100)
    .exitProcess(false);

  let failure: string | null = null;
  let output = '';
  let parsed: ReturnType<typeof parser.parseSync> | undefined;
  const environment = hideUnknownEnvironment([
    ...Object.keys(commonNodeOptions),
    ...Object.keys(metaOptions),
    'config-file',
  ]);
  try {
    parsed = parser.parseSync([...argv], {}, (err, _argv, out) => {
      if (err) failure = err.message;
      output = out;
    });
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
  } finally {
    environment.restore();
  }
  if (failure !== null) return usageError(failure);
  if (output !== '') return { kind: 'exit', code: 0, output: `${output}\n` };
  if (parsed === undefined) return usageError('the flags could not be parsed');

  const common: CommonNodeArgs = {
    id: parsed.id,
    listen: parsed.listen,
    advertise: parsed.advertise,
    peers: parsed.peers,
    dataDir: parsed['data-dir'],
    metricsListen: parsed['metrics-listen'],
    metricsAdvertise: parsed['metrics-advertise'],
    enablePprof: parsed['enable-pprof'],
    clusterId: parsed['cluster-id'],
    logLevel: parsed['log-level'],
    tickMs: parsed['tick-ms'],
    electionTicks: parsed['election-ticks'],
    heartbeatTicks: parsed['heartbeat-ticks'],
    snapshotEntries: parsed['snapshot-entries'],
    logMemoryMb: parsed['log-memory-mb'],
    shutdownGraceMs: parsed['shutdown-grace-ms'],
    peerRoute: parsed['peer-route'],
    compactionMarginEntries: parsed['compaction-margin-entries'],
    certFile: parsed['cert-file'],
    keyFile: parsed['key-file'],
    trustedCaFile: parsed['trusted-ca-file'],
    clientCertAuth: parsed['client-cert-auth'],
    peerCertFile: parsed['peer-cert-file'],
    peerKeyFile: parsed['peer-key-file'],
    peerTrustedCaFile: parsed['peer-trusted-ca-file'],
    tlsReloadMs: parsed['tls-reload-ms'],
  };
  try {
    validateCommonArgs(common);
    if (common.dataDir.trim() === '') throw new Error('--data-dir must not be empty');
    if (!Number.isSafeInteger(common.shutdownGraceMs) || common.shutdownGraceMs < 0) {
      throw new Error(
        `--shutdown-grace-ms must be a non-negative integer, got ${common.shutdownGraceMs}`,
      );
    }
    const dedupWindowEntries = parsed['dedup-window-entries'];
    positiveInteger('--dedup-window-entries', dedupWindowEntries, dedupWindowEntriesMax);
    const slotMoveDeadlineMs = parsed['slot-move-deadline-ms'];
    positiveInteger('--slot-move-deadline-ms', slotMoveDeadlineMs);
    const slotImportDeadlineMs = parsed['slot-import-deadline-ms'];
    positiveInteger('--slot-import-deadline-ms', slotImportDeadlineMs);
    const slotMoveBatchSlots = parsed['slot-move-batch-slots'];
    positiveInteger('--slot-move-batch-slots', slotMoveBatchSlots);
    const peerList = parsePeers(common.peers);
    const peerRoutes = parsePeerRoutes(common.peerRoute);
    const missingSelf = peersMissingSelf(peerList, common.id);
    if (missingSelf !== null) throw new Error(missingSelf);
    const addressing = nodeAddressing(common, peerList);
    return {
      kind: 'run',
      args: {
        ...common,
        ...addressing,
        peerList,
        peerRoutes,
        dedupWindowEntries,
        slotMoveDeadlineMs,
        slotImportDeadlineMs,
        slotMoveBatchSlots,
        ignoredEnvironment: environment.ignored,
      },
    };
  } catch (err) {
    return usageError((err as Error).message);
  }
}
