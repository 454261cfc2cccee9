// The eraftkv-kv command line: what it accepts, and what it refuses with which message.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseKvCommandLine, UsageError } from '../src';

const required = [
  '--id',
  '1',
  '--group',
  '1',
  '--listen',
  '127.0.0.1:7088',
  '--meta',
  '127.0.0.1:8088,127.0.0.1:8089',
  '--data-dir',
  '/tmp/kv-1-1',
];

/** `required` with `flag` set to `value` (replaced when it is there, appended otherwise). */
function withFlag(flag: string, value: string): string[] {
  const i = required.indexOf(flag);
  if (i < 0) return [...required, flag, value];
  const argv = [...required];
  argv[i + 1] = value;
  return argv;
}

const parse = (argv: string[]) =>
  parseKvCommandLine(argv, { exitProcess: false, version: '0.1.0' });

describe('parseKvCommandLine', () => {
  afterEach(() => {
    delete process.env.ERAFTKV_CONFIG_POLL_MS;
  });

  it('parses the flags of the contract with their defaults', () => {
    const line = parse([...required, '--peers', '1=127.0.0.1:7088,2=127.0.0.1:7089']);
    expect(line.peers.map((p) => p.id)).toEqual([1, 2]);
    expect(line.logLevel).toBe('info');
    expect(line.server).toMatchObject({
      id: 1,
      groupId: 1,
      listen: '127.0.0.1:7088',
      metaAddresses: ['127.0.0.1:8088', '127.0.0.1:8089'],
      dataDir: '/tmp/kv-1-1',
      configPollMs: 500,
      dedupWindowEntries: 100000,
      shutdownGraceMs: 5000,
      raft: { tickMs: 100, logMemoryBytesMax: 64 * 1024 * 1024 },
    });
    expect(line.server.limits).toMatchObject({
      keyBytesMax: 4096,
      valueBytesMax: 1048576,
      opsPerRequestMax: 128,
      scanLimitMax: 10000,
      responseBytesMax: 4 * 1024 * 1024,
      scanRequestsInFlightMax: 16,
    });
  });

  it('takes the response budget and the scan concurrency from their flags', () => {
    const line = parse([
      ...required,
      '--response-bytes-max',
      '65536',
      '--scan-requests-in-flight-max',
      '2',
    ]);
    expect(line.server.limits).toMatchObject({
      responseBytesMax: 65536,
      scanRequestsInFlightMax: 2,
    });
  });

  it('takes flags from ERAFTKV_ environment variables', () => {
    process.env.ERAFTKV_CONFIG_POLL_MS = '250';
    expect(parse(required).server.configPollMs).toBe(250);
  });

  it('treats an empty --peers as joining an existing group', () => {
    expect(parse(required).peers).toEqual([]);
  });

  it.each([
    [
      'a missing --group',
      required.filter((_, i) => i !== 2 && i !== 3),
      'Missing required argument: group',
    ],
    ['an unknown flag', [...required, '--bogus', '1'], 'Unknown argument'],
    ['group 0', withFlag('--group', '0'), '--group must be a positive integer, got 0'],
    ['a flag given twice', [...required, '--group', '2'], '--group is given more than once'],
    ['a bad --meta address', withFlag('--meta', 'nowhere'), '--meta: "nowhere" is not host:port'],
    [
      'a bad --peers entry',
      [...required, '--peers', '1=x'],
      '--peers: address "x" of node 1 is not host:port',
    ],
    [
      '--peers without this node',
      [...required, '--peers', '2=127.0.0.1:7089'],
      '--peers (2=127.0.0.1:7089) does not list this node (--id 1)',
    ],
    [
      'a zero poll interval',
      [...required, '--config-poll-ms', '0'],
      '--config-poll-ms must be a positive integer',
    ],
    [
      'a huge value limit',
      [...required, '--value-bytes-max', String(64 * 1024 * 1024)],
      '--value-bytes-max must be at most 16777216',
    ],
    [
      'a zero response budget',
      [...required, '--response-bytes-max', '0'],
      '--response-bytes-max must be a positive integer, got 0',
    ],
    [
      'a huge response budget',
      [...required, '--response-bytes-max', String(1024 * 1024 * 1024)],
      '--response-bytes-max must be at most 268435456',
    ],
    [
      'no scan concurrency',
      [...required, '--scan-requests-in-flight-max', '0'],
      '--scan-requests-in-flight-max must be a positive integer, got 0',
    ],
    ['a bad log level', [...required, '--log-level', 'loud'], 'Invalid values'],
    ['a non-numeric id', withFlag('--id', 'one'), '--id must be a positive integer'],
  ])('refuses %s with a UsageError', (_what, argv, message) => {
    expect(() => parse(argv)).toThrow(UsageError);
    expect(() => parse(argv)).toThrow(message);
  });

  it('takes DNS names in --meta and --peers, and advertises a name while binding 0.0.0.0', () => {
    const line = parse([
      ...withFlag('--listen', '0.0.0.0:7088'),
      '--advertise',
      'kv-1-0.eraftkv-kv-1:7088',
      '--peers',
      '1=kv-1-0.eraftkv-kv-1:7088,2=kv-1-1.eraftkv-kv-1:7088',
    ]);
    expect(line.server.listen).toBe('0.0.0.0:7088');
    expect(line.server.advertise).toBe('kv-1-0.eraftkv-kv-1:7088');
    const named = parse(withFlag('--meta', 'meta-0.eraftkv-meta:8088,meta-1.eraftkv-meta:8088'));
    expect(named.server.metaAddresses).toEqual([
      'meta-0.eraftkv-meta:8088',
      'meta-1.eraftkv-meta:8088',
    ]);
  });

  it('refuses a wildcard address to advertise and --peers that name it elsewhere', () => {
    expect(() => parse(withFlag('--listen', '0.0.0.0:7088'))).toThrow(
      /--listen \(the default of --advertise\) is 0\.0\.0\.0:7088.*give --advertise/,
    );
    expect(() => parse([...required, '--peers', '1=127.0.0.2:7088,2=127.0.0.1:7089'])).toThrow(
      /lists this node \(--id 1\) at 127\.0\.0\.2:7088, but it advertises 127\.0\.0\.1:7088/,
    );
  });

  it('reads a config file below the flags and refuses a meta-only key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eraftkv-kv-config-'));
    try {
      const path = join(dir, 'kv.yaml');
      writeFileSync(path, 'config-poll-ms: 250\nkey-bytes-max: 1024\ngroup: 7\n');
      const line = parse([...required, '--config-file', path, '--key-bytes-max', '2048']);
      expect(line.server.configPollMs).toBe(250);
      expect(line.server.groupId).toBe(1); // the flag wins
      expect(line.server.limits?.keyBytesMax).toBe(2048);
      writeFileSync(path, 'slot-move-batch-slots: 4\n');
      expect(() => parse([...required, '--config-file', path])).toThrow(
        `--config-file ${path}: key "slot-move-batch-slots" is not a flag of this server`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ignores ERAFTKV_* variables that name no flag (a Kubernetes service link) and reports them', () => {
    process.env.ERAFTKV_SERVICE_PORT = '8088';
    try {
      const line = parse(required);
      expect(line.ignoredEnvironment).toEqual(['ERAFTKV_SERVICE_PORT']);
      expect(process.env.ERAFTKV_SERVICE_PORT).toBe('8088');
    } finally {
      delete process.env.ERAFTKV_SERVICE_PORT;
    }
  });
});
