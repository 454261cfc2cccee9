// eraftkv-meta's addresses (--listen vs --advertise) and --config-file, through the real parser:
// what is advertised, what is refused with which message, and which source of a setting wins.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMetaArgs, type MetaArgs } from '../src';

const base = ['--id', '1', '--data-dir', '/tmp/meta-1'];

function run(argv: string[]): MetaArgs {
  const parsed = parseMetaArgs(argv, '1.2.3');
  if (parsed.kind !== 'run')
    throw new Error(`expected to run, got exit ${parsed.code}: ${parsed.output}`);
  return parsed.args;
}

function refusal(argv: string[]): string {
  const parsed = parseMetaArgs(argv, '1.2.3');
  if (parsed.kind !== 'exit') throw new Error('expected a refusal, got a runnable configuration');
  expect(parsed.code).toBe(2);
  return parsed.output;
}

describe('eraftkv-meta --listen and --advertise', () => {
  it('advertises --listen when no --advertise is given', () => {
    const args = run([...base, '--listen', '127.0.0.1:8088', '--metrics-listen', '127.0.0.1:9188']);
    expect(args.advertise).toBe('127.0.0.1:8088');
    expect(args.metricsAdvertise).toBe('127.0.0.1:9188');
  });

  it('binds every interface and advertises a DNS name that --peers lists', () => {
    const peers =
      '1=meta-0.eraftkv-meta:8088,2=meta-1.eraftkv-meta:8088,3=meta-2.eraftkv-meta:8088';
    const args = run([
      ...base,
      '--listen',
      '0.0.0.0:8088',
      '--advertise',
      'meta-0.eraftkv-meta:8088',
      '--metrics-listen',
      '0.0.0.0:9188',
      '--metrics-advertise',
      'meta-0.eraftkv-meta:9188',
      '--peers',
      peers,
    ]);
    expect(args.listen).toBe('0.0.0.0:8088');
    expect(args.advertise).toBe('meta-0.eraftkv-meta:8088');
    expect(args.metricsAdvertise).toBe('meta-0.eraftkv-meta:9188');
    expect(args.peerList.map((m) => m.address)).toEqual([
      'meta-0.eraftkv-meta:8088',
      'meta-1.eraftkv-meta:8088',
      'meta-2.eraftkv-meta:8088',
    ]);
  });

  it('refuses a wildcard --listen without --advertise, naming --advertise', () => {
    expect(refusal([...base, '--listen', '0.0.0.0:8088'])).toMatch(
      /--listen \(the default of --advertise\) is 0\.0\.0\.0:8088, which binds every interface but cannot be dialled: give --advertise/,
    );
    expect(refusal([...base, '--listen', '[::]:8088'])).toMatch(/give --advertise/);
  });

  it('refuses a wildcard --advertise and a wildcard --metrics-advertise', () => {
    expect(refusal([...base, '--listen', '0.0.0.0:8088', '--advertise', '0.0.0.0:8088'])).toMatch(
      /--advertise is 0\.0\.0\.0:8088/,
    );
    expect(
      refusal([...base, '--listen', '127.0.0.1:8088', '--metrics-listen', '0.0.0.0:9188']),
    ).toMatch(/--metrics-listen \(the default of --metrics-advertise\) is 0\.0\.0\.0:9188/);
  });

  it('refuses --metrics-advertise without --metrics-listen', () => {
    expect(
      refusal([...base, '--listen', '127.0.0.1:8088', '--metrics-advertise', 'a:9188']),
    ).toMatch(/--metrics-advertise needs --metrics-listen/);
  });

  it('refuses --peers that list this node at another address than it advertises', () => {
    const out = refusal([
      ...base,
      '--listen',
      '0.0.0.0:8088',
      '--advertise',
      'meta-0.example:8088',
      '--peers',
      '1=10.0.0.1:8088,2=10.0.0.2:8088',
    ]);
    expect(out).toMatch(
      /lists this node \(--id 1\) at 10\.0\.0\.1:8088, but it advertises meta-0\.example:8088 \(--advertise\)/,
    );
  });
});

describe('eraftkv-meta --config-file', () => {
  let dir = '';
  const saved = { ...process.env };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'eraftkv-meta-config-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
  });
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('takes every setting from a YAML file, required flags included', () => {
    const path = file(
      'meta.yaml',
      [
        'id: 2',
        'listen: 0.0.0.0:8089',
        'advertise: meta-1.example:8089',
        'data-dir: /data/meta',
        'peers: 1=meta-0.example:8088,2=meta-1.example:8089',
        'tick-ms: 50',
        'client-cert-auth: false',
        'slot-move-batch-slots: 16',
        'log-level: warn',
      ].join('\n'),
    );
    const args = run(['--config-file', path]);
    expect(args).toMatchObject({
      id: 2,
      listen: '0.0.0.0:8089',
      advertise: 'meta-1.example:8089',
      dataDir: '/data/meta',
      tickMs: 50,
      slotMoveBatchSlots: 16,
      logLevel: 'warn',
      electionTicks: 10,
    });
    expect(args.peerList.map((m) => m.id)).toEqual([1, 2]);
  });

  it('reads JSON too', () => {
    const path = file(
      'meta.json',
      JSON.stringify({ id: 3, listen: '127.0.0.1:8090', 'data-dir': '/d' }),
    );
    expect(run(['--config-file', path])).toMatchObject({ id: 3, dataDir: '/d' });
  });

  it('lets flags win over ERAFTKV_* variables, and both over the file', () => {
    const path = file('meta.yaml', 'listen: 127.0.0.1:8088\ntick-ms: 50\nelection-ticks: 20\n');
    process.env.ERAFTKV_TICK_MS = '70';
    process.env.ERAFTKV_ELECTION_TICKS = '30';
    const args = run([...base, '--config-file', path, '--election-ticks', '40']);
    expect(args.electionTicks).toBe(40); // flag over env and file
    expect(args.tickMs).toBe(70); // env over file
    expect(args.listen).toBe('127.0.0.1:8088'); // file over nothing
    expect(args.heartbeatTicks).toBe(1); // default
  });

  it('takes the file from ERAFTKV_CONFIG_FILE', () => {
    process.env.ERAFTKV_CONFIG_FILE = file('meta.yaml', 'listen: 127.0.0.1:8091\n');
    expect(run(base).listen).toBe('127.0.0.1:8091');
  });

  it('refuses an unknown key, naming the key and the file', () => {
    const path = file('meta.yaml', 'listen: 127.0.0.1:8088\ndata_dir: /x\n');
    const out = refusal([...base, '--config-file', path]);
    expect(out).toContain(`--config-file ${path}: key "data_dir" is not a flag of this server`);
    expect(out).toContain('did you mean "data-dir"?');
    // A kv server's flag is not a meta flag either.
    const kv = file('kv.yaml', 'listen: 127.0.0.1:8088\nconfig-poll-ms: 100\n');
    expect(refusal([...base, '--config-file', kv])).toContain('key "config-poll-ms"');
  });

  it('refuses a value of the wrong type, a bad choice, a missing file and bad YAML', () => {
    expect(
      refusal([
        ...base,
        '--config-file',
        file('a.yaml', 'listen: 127.0.0.1:8088\ntick-ms: fast\n'),
      ]),
    ).toMatch(/key "tick-ms" must be a number/);
    expect(
      refusal([
        ...base,
        '--config-file',
        file('b.yaml', 'listen: 127.0.0.1:8088\nlog-level: loud\n'),
      ]),
    ).toMatch(/key "log-level" must be one of debug, info, warn, error/);
    expect(refusal([...base, '--config-file', join(dir, 'missing.yaml')])).toMatch(
      /missing\.yaml: cannot be read/,
    );
    expect(refusal([...base, '--config-file', file('c.yaml', 'listen: [unclosed\n')])).toMatch(
      /c\.yaml: not valid YAML or JSON/,
    );
    expect(refusal([...base, '--config-file', file('d.yaml', '- listen\n')])).toMatch(
      /must be a map of flag names to values/,
    );
    expect(
      refusal([...base, '--config-file', file('e.yaml', 'listen: 1.2.3.4:1\nlisten: 1.2.3.4:2\n')]),
    ).toMatch(/not valid YAML or JSON/);
  });

  it('ignores ERAFTKV_* variables that name no flag and reports them, still refusing unknown flags', () => {
    process.env.ERAFTKV_SERVICE_HOST = '10.0.0.1';
    process.env.ERAFTKV_PORT_8088_TCP_ADDR = '10.0.0.1';
    process.env.ERAFTKV_TICK_MS = '60';
    const args = run([...base, '--listen', '127.0.0.1:8088']);
    expect(args.tickMs).toBe(60);
    expect(args.ignoredEnvironment).toEqual(['ERAFTKV_PORT_8088_TCP_ADDR', 'ERAFTKV_SERVICE_HOST']);
    expect(process.env.ERAFTKV_SERVICE_HOST).toBe('10.0.0.1');
    expect(refusal([...base, '--listen', '127.0.0.1:8088', '--service-host', 'x'])).toMatch(
      /Unknown argument/,
    );
  });
});
