// The command-line options both server binaries share, as plain yargs option definitions (so that
// the Raft packages do not depend on yargs). Every option can also come from ERAFTKV_<NAME> in the
// environment (the binaries call yargs' .env('ERAFTKV')).
import type { RaftTuning } from './raft-node';
import type { LogLevel } from '@eraftkv/raft-server';
import { peerNumberMax } from '@eraftkv/raft-server';
import type { NodeTlsFlags } from './tls';
import type { Member } from '@eraftkv/raft';
import { formatPeers, splitHostPort } from './peers';

interface OptionSpec {
  readonly type: 'string' | 'number' | 'boolean';
  readonly describe: string;
  readonly default?: string | number | boolean;
  readonly demandOption?: boolean;
  readonly group?: string;
  readonly choices?: readonly string[];
}

export const commonNodeOptions = {
  id: {
    type: 'number',
    describe: "This node's id within its group (a positive integer)",
    demandOption: true,
  },
  listen: {
    type: 'string',
    describe:
      'host:port the gRPC server binds (peers and clients); 0.0.0.0:PORT binds every interface',
    demandOption: true,
  },
  advertise: {
    type: 'string',
    describe:
      "host:port peers, the meta group and clients are told to dial (a DNS name or an address, never a wildcard); must equal this node's entry in --peers. Default: --listen",
    default: '',
  },
  peers: {
    type: 'string',
    describe:
      "The group's first members as id=host:port,... (this node included). Used to bootstrap an empty data dir; afterwards membership comes from the data dir. Leave empty to join an existing group as a new member.",
    default: '',
  },
  'data-dir': {
    type: 'string',
    describe: 'Directory for the Raft log, snapshots and data',
    demandOption: true,
  },
  'metrics-listen': {
    type: 'string',
    describe: 'host:port the HTTP server binds for /metrics and /health (empty: off)',
    default: '',
  },
  'metrics-advertise': {
    type: 'string',
    describe:
      'host:port where /metrics and /health are reached from elsewhere (logged and reported by Status). Default: --metrics-listen',
    default: '',
  },
  'enable-pprof': {
    type: 'boolean',
    describe:
      'Serve GET /debug/pprof/profile?seconds=N (a V8 CPU profile of the next N seconds, .cpuprofile JSON that scripts/profile-summary.ts summarises) and GET /debug/pprof/heap (a V8 heap snapshot) on --metrics-listen',
    default: false,
  },
  'cluster-id': {
    type: 'string',
    describe: 'Peers with another cluster id are refused',
    default: 'eraftkv',
  },
  'log-level': {
    type: 'string',
    describe: 'debug, info, warn or error',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error'],
  },
  'tick-ms': { type: 'number', describe: 'Raft tick length in ms', default: 100, group: 'Timing:' },
  'election-ticks': {
    type: 'number',
    describe: 'Election timeout in ticks (randomized up to twice this)',
    default: 10,
    group: 'Timing:',
  },
  'heartbeat-ticks': {
    type: 'number',
    describe: 'Heartbeat interval in ticks',
    default: 1,
    group: 'Timing:',
  },
  'snapshot-entries': {
    type: 'number',
    describe:
      'Every this many applied entries, make the applied state durable and compact the Raft log below it (no data is rewritten; a snapshot file is written only for a follower that lags behind the compacted log)',
    default: 100000,
    group: 'Storage:',
  },
  'compaction-margin-entries': {
    type: 'number',
    describe:
      'Log entries kept below each snapshot, so that a slightly slow follower needs no snapshot',
    default: 1000,
    group: 'Storage:',
  },
  'log-memory-mb': {
    type: 'number',
    describe: 'MiB of recent log entries kept in memory',
    default: 64,
    group: 'Storage:',
  },
  'peer-route': {
    type: 'string',
    describe:
      'Reach some peers through other addresses than the ones they advertise, as id=host:port,... (for proxies; the chaos suite routes every peer link through one)',
    default: '',
  },
  'cert-file': {
    type: 'string',
    describe:
      'TLS: the certificate this node presents on --listen (PEM). With TLS the port serves TLS only.',
    default: '',
    group: 'TLS:',
  },
  'key-file': {
    type: 'string',
    describe: 'TLS: the private key of --cert-file (PEM)',
    default: '',
    group: 'TLS:',
  },
  'trusted-ca-file': {
    type: 'string',
    describe: 'TLS: the CA certificates (PEM) that client certificates are checked against',
    default: '',
    group: 'TLS:',
  },
  'client-cert-auth': {
    type: 'boolean',
    describe: 'TLS: refuse clients without a certificate signed by --trusted-ca-file',
    default: false,
    group: 'TLS:',
  },
  'peer-cert-file': {
    type: 'string',
    describe:
      'TLS: the certificate this node presents when it dials peers and other groups; its subjectAltName must hold the URI urn:eraftkv:group:<group>:node:<id> (0 for the meta group)',
    default: '',
    group: 'TLS:',
  },
  'peer-key-file': {
    type: 'string',
    describe: 'TLS: the private key of --peer-cert-file',
    default: '',
    group: 'TLS:',
  },
  'peer-trusted-ca-file': {
    type: 'string',
    describe:
      'TLS: the CA certificates of peer certificates: Raft RPCs and slot copies are taken only from a certificate it signed that names the sender',
    default: '',
    group: 'TLS:',
  },
  'tls-reload-ms': {
    type: 'number',
    describe:
      'TLS: how often the certificate, key and CA files are read again (also on SIGHUP); new connections use what changed',
    default: 5000,
    group: 'TLS:',
  },
  'shutdown-grace-ms': {
    type: 'number',
    describe: 'How long a graceful stop waits for requests in flight',
    default: 5000,
  },
} as const satisfies Record<string, OptionSpec>;

/** The parsed values of commonNodeOptions (yargs also gives camelCase names). */
export interface CommonNodeArgs {
  readonly id: number;
  readonly listen: string;
  readonly advertise: string;
  readonly peers: string;
  readonly dataDir: string;
  readonly metricsListen: string;
  readonly metricsAdvertise: string;
  readonly enablePprof: boolean;
  readonly clusterId: string;
  readonly logLevel: LogLevel;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly snapshotEntries: number;
  readonly logMemoryMb: number;
  readonly compactionMarginEntries: number;
  readonly shutdownGraceMs: number;
  readonly peerRoute: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustedCaFile: string;
  readonly clientCertAuth: boolean;
  readonly peerCertFile: string;
  readonly peerKeyFile: string;
  readonly peerTrustedCaFile: string;
  readonly tlsReloadMs: number;
}

/** The TLS flags of the common flags (NodeTls.fromFlags). */
export function tlsFlagsOf(args: CommonNodeArgs): NodeTlsFlags {
  return {
    certFile: args.certFile,
    keyFile: args.keyFile,
    trustedCaFile: args.trustedCaFile,
    clientCertAuth: args.clientCertAuth,
    peerCertFile: args.peerCertFile,
    peerKeyFile: args.peerKeyFile,
    peerTrustedCaFile: args.peerTrustedCaFile,
    reloadMs: args.tlsReloadMs,
  };
}

/** Checks values that yargs cannot: positive integers, sane timing. Throws with the flag name. */
export function validateCommonArgs(args: CommonNodeArgs): void {
  const positive: [string, number][] = [
    ['--id', args.id],
    ['--tick-ms', args.tickMs],
    ['--election-ticks', args.electionTicks],
    ['--heartbeat-ticks', args.heartbeatTicks],
    ['--snapshot-entries', args.snapshotEntries],
    ['--log-memory-mb', args.logMemoryMb],
  ];
  for (const [flag, value] of positive) {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new Error(`${flag} must be a positive integer, got ${value}`);
  }
  if (args.id > peerNumberMax) throw new Error(`--id must be at most 2^48-1, got ${args.id}`);
  if (!Number.isSafeInteger(args.compactionMarginEntries) || args.compactionMarginEntries < 0) {
    throw new Error(
      `--compaction-margin-entries must be a non-negative integer, got ${args.compactionMarginEntries}`,
    );
  }
  if (args.heartbeatTicks >= args.electionTicks) {
    throw new Error(
      `--heartbeat-ticks (${args.heartbeatTicks}) must be below --election-ticks (${args.electionTicks})`,
    );
  }
}

/** The Raft settings of the common flags, as both servers take them. */
export function raftTuningOf(
  args: CommonNodeArgs,
  peerRoutes: ReadonlyMap<number, string>,
): RaftTuning {
  return {
    tickMs: args.tickMs,
    electionTicks: args.electionTicks,
    heartbeatTicks: args.heartbeatTicks,
    snapshotEntries: args.snapshotEntries,
    compactionMarginEntries: args.compactionMarginEntries,
    logMemoryBytesMax: args.logMemoryMb * 1024 * 1024,
    peerRoutes,
  };
}

/** What --config-file says in --help (the binaries register it with yargs' .config()). */
export const configFileDescription =
  'A YAML or JSON file of settings whose keys are the flag names (data-dir: /data). The command line wins over ERAFTKV_* variables, which win over the file; an unknown key is an error';

/** The hosts that bind every interface: an address to listen on, never one to dial. */
const wildcardHosts = new Set(['', '0.0.0.0', '::', '[::]', '[::0]', '*', '[0:0:0:0:0:0:0:0]']);

/** Where a node binds and what it tells others, both checked. */
export interface NodeAddressing {
  /** host:port peers and clients dial (--advertise, else --listen). */
  readonly advertise: string;
  /** host:port of /metrics and /health for others ('' without --metrics-listen). */
  readonly metricsAdvertise: string;
}

function advertised(flag: string, value: string, listenFlag: string, listen: string): string {
  const address = value === '' ? listen : value;
  const from = value === '' ? `${listenFlag} (the default of ${flag})` : flag;
  const { host, port } = splitHostPort(address, from);
  if (wildcardHosts.has(host))
    throw new Error(
      `${from} is ${address}, which binds every interface but cannot be dialled: give ${flag} host:port with this node's DNS name or address`,
    );
  if (port === 0)
    throw new Error(`${from} is ${address}: port 0 cannot be dialled; give ${flag} the real port`);
  return address;
}

/**
 * Checks --listen, --advertise, --metrics-listen and --metrics-advertise and that --peers (when
 * it lists this node) names it at its advertised address, as etcd checks --initial-cluster
 * against --initial-advertise-peer-urls: a node bootstrapped under an address it is not
 * reachable at makes a group no one can reach. Throws an Error naming the flag.
 */
export function nodeAddressing(args: CommonNodeArgs, peers: readonly Member[]): NodeAddressing {
  splitHostPort(args.listen, '--listen');
  if (args.metricsListen !== '') splitHostPort(args.metricsListen, '--metrics-listen');
  if (args.metricsListen === '' && args.metricsAdvertise !== '')
    throw new Error('--metrics-advertise needs --metrics-listen (the HTTP server is off)');
  const listenPort = splitHostPort(args.listen, '--listen').port;
  // A test binds port 0 and learns its address afterwards: nothing is advertised before then.
  const advertise =
    args.advertise === '' && listenPort === 0
      ? args.listen
      : advertised('--advertise', args.advertise, '--listen', args.listen);
  const metricsListenPort =
    args.metricsListen === '' ? 0 : splitHostPort(args.metricsListen, '--metrics-listen').port;
  const metricsAdvertise =
    args.metricsListen === '' || (args.metricsAdvertise === '' && metricsListenPort === 0)
      ? args.metricsListen
      : advertised(
          '--metrics-advertise',
          args.metricsAdvertise,
          '--metrics-listen',
          args.metricsListen,
        );
  const self = peers.find((m) => m.id === args.id);
  if (self !== undefined && self.address !== advertise)
    throw new Error(
      `--peers (${formatPeers(peers)}) lists this node (--id ${args.id}) at ${self.address}, but it advertises ${advertise}` +
        (args.advertise === '' ? ' (--listen; no --advertise given)' : ' (--advertise)') +
        ': the two must be the same host:port',
    );
  return { advertise, metricsAdvertise };
}
