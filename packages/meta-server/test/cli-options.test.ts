// The eraftkv-meta command line: what runs, what prints help, what is refused with exit code 2.
import { parseMetaArgs, type MetaArgs } from '../src';

const base = ['--id', '1', '--listen', '127.0.0.1:8088', '--data-dir', '/tmp/meta-1'];

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

describe('eraftkv-meta flags', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of Object.keys(process.env)) {
      if (!(key in saved)) delete process.env[key];
    }
  });

  it('runs with the three required flags and the defaults', () => {
    const args = run(base);
    expect(args).toMatchObject({
      id: 1,
      listen: '127.0.0.1:8088',
      dataDir: '/tmp/meta-1',
      peers: '',
      peerList: [],
      metricsListen: '',
      logLevel: 'info',
      tickMs: 100,
      dedupWindowEntries: 10000,
      slotMoveDeadlineMs: 5000,
    });
  });

  it('parses --peers into members', () => {
    const args = run([...base, '--peers', '1=127.0.0.1:8088,2=127.0.0.1:8089']);
    expect(args.peerList).toEqual([
      { id: 1, address: '127.0.0.1:8088', learner: false, incarnation: 0 },
      { id: 2, address: '127.0.0.1:8089', learner: false, incarnation: 0 },
    ]);
  });

  it('takes flags from ERAFTKV_* environment variables', () => {
    process.env.ERAFTKV_METRICS_LISTEN = '127.0.0.1:9188';
    expect(run(base).metricsListen).toBe('127.0.0.1:9188');
  });

  it('prints help with an example, and the version, with exit code 0', () => {
    const help = parseMetaArgs(['--help'], '1.2.3');
    expect(help).toMatchObject({ kind: 'exit', code: 0 });
    expect(help.kind === 'exit' && help.output).toMatch(/Examples:[\s\S]*--peers/);
    expect(parseMetaArgs(['--version'], '1.2.3')).toEqual({
      kind: 'exit',
      code: 0,
      output: '1.2.3\n',
    });
  });

  it('refuses bad flags with exit code 2 and says which', () => {
    expect(refusal([])).toMatch(/Missing required arguments: id, listen, data-dir/);
    expect(refusal([...base, '--bogus', '1'])).toMatch(/Unknown argument: bogus/);
    expect(refusal(['--id', '0', ...base.slice(2)])).toMatch(/--id must be a positive integer/);
    expect(refusal(['--id', 'one', ...base.slice(2)])).toMatch(/--id must be a positive integer/);
    expect(refusal([...base, '--peers', '2=127.0.0.1:8089'])).toMatch(/does not list this node/);
    expect(refusal([...base, '--peers', '1=nowhere'])).toMatch(/not host:port/);
    expect(refusal([...base, '--listen', 'nowhere'])).toMatch(/--listen/);
    expect(refusal([...base, '--log-level', 'loud'])).toMatch(/Invalid values/);
    expect(refusal([...base, '--heartbeat-ticks', '20'])).toMatch(/must be below --election-ticks/);
    expect(refusal([...base, '--dedup-window-entries', '0'])).toMatch(/--dedup-window-entries/);
  });
});
