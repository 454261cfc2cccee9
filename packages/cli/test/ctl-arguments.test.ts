// eraftkv-ctl's command line: what a user who gets it wrong sees, before anything is sent. Every
// usage mistake exits 128 (etcdctl's code for bad arguments) with a message that names the flag
// or argument. The endpoints given here never answer, and nothing here needs them to.
import { exitCodes } from '../src';
import { takeTlsFlags } from '../src/ctl';
import { ctl } from './run-ctl';

/** An endpoint no test here may reach: port 9 on 127.0.0.1 (discard, never served here). */
const nowhere = ['--endpoints', '127.0.0.1:9'];
const seeHelp = "Run 'eraftkv-ctl --help' (or '<command> --help') for usage.\n";
const notALeaseId =
  "must be a lease id in hex as 'lease grant' prints it (its first 8 digits the group, the last 8 not all 0)";

describe('eraftkv-ctl arguments', () => {
  it('exits 128, pointing at --help, without a command', async () => {
    const run = await ctl(...nowhere);
    expect(run).toEqual({
      code: exitCodes.badArgs,
      out: '',
      err: `Error: name a command (see --help)\n${seeHelp}`,
    });
  });

  it('exits 128 for a missing positional argument', async () => {
    const run = await ctl(...nowhere, 'get');
    expect(run.code).toBe(128);
    expect(run.out).toBe('');
    expect(run.err).toMatch(/^Error: Not enough non-option arguments: got 0, need at least 1\n/);
    expect(run.err.endsWith(seeHelp)).toBe(true);
  });

  it('exits 128 naming an unknown flag', async () => {
    const run = await ctl(...nowhere, 'get', 'a', '--bogus');
    expect(run.code).toBe(128);
    expect(run.err).toMatch(/^Error: Unknown argument: bogus\n/);
  });

  it('exits 128 naming --write-out and the formats it takes', async () => {
    const run = await ctl(...nowhere, '-w', 'xml', 'get', 'a');
    expect(run.code).toBe(128);
    expect(run.err).toContain(
      'Argument: write-out, Given: "xml", Choices: "simple", "json", "table"',
    );
  });

  it('exits 128 naming the subcommands when a command that takes one gets none', async () => {
    const hints: [string, string][] = [
      ['group', 'group needs a subcommand: add, remove or list'],
      ['member', 'member needs a subcommand: list, add, remove or promote'],
      ['leader', 'leader needs a subcommand: transfer'],
      ['slot', 'slot needs a subcommand: move'],
      ['endpoint', 'endpoint needs a subcommand: status, health or hashkv'],
      ['lease', 'lease needs a subcommand: grant, revoke, timetolive, list or keep-alive'],
    ];
    for (const [command, hint] of hints) {
      const run = await ctl(...nowhere, command);
      expect({ command, code: run.code, out: run.out }).toEqual({ command, code: 128, out: '' });
      expect(run.err).toBe(`Error: ${hint}\n${seeHelp}`);
    }
  });

  it('exits 128 naming the flag or argument whose value is wrong', async () => {
    const cases: [string[], string][] = [
      [
        ['--command-timeout', '5x', 'get', 'a'],
        'Error: --command-timeout: "5x" is not a duration like 5s, 500ms or 2m\n',
      ],
      [['--command-timeout', '0s', 'get', 'a'], 'Error: --command-timeout must be positive\n'],
      [['scan', 'a', '--limit', '0'], 'Error: --limit must be a positive integer, got 0\n'],
      [
        ['member', 'list', '--group=-1'],
        'Error: --group must be 0 (meta) or a kv group id, got -1\n',
      ],
      [['member', 'add', '4', 'localhost'], 'Error: "localhost" is not host:port\n'],
      [['group', 'add', '2', '127.0.0.1:1,nohost'], 'Error: "nohost" is not host:port\n'],
      [['group', 'remove', '0'], 'Error: <gid> must be a positive integer, got 0\n'],
      [['slot', 'move', '2', '9-x'], 'Error: <range>: '],
      [['watch', 'a', 'b', '--prefix'], 'Error: [range_end] and --prefix exclude each other\n'],
      [['watch', 'b', 'a'], 'Error: [range_end] must come after <key>\n'],
      [['watch', 'a', '--rev', '-1'], 'Error: --rev must be a non-negative integer, got -1\n'],
      [['watch', 'a', '--rev', 'x'], 'Error: --rev must be a non-negative integer, got NaN\n'],
      [['-w', 'table', 'watch', 'a'], 'Error: watch prints -w simple or -w json\n'],
      [['lease', 'grant', '0'], 'Error: <ttl> must be a positive integer, got 0\n'],
      [
        ['lease', 'grant', '60', '--group', '0'],
        'Error: --group must be a positive integer, got 0\n',
      ],
      // --key after 'lease grant' is the command's (the TLS --key goes before it).
      [
        ['lease', 'grant', '60', '--group', '2', '--key', 'app/x'],
        'Error: --group and --key exclude each other\n',
      ],
      [['lease', 'list', '--group', '-1'], 'Error: --group must be a positive integer, got -1\n'],
      [['lease', 'revoke', '5'], `Error: <id> ${notALeaseId}, got "5"\n`],
      [['lease', 'revoke', 'lease-1'], `Error: <id> ${notALeaseId}, got "lease-1"\n`],
      [['lease', 'timetolive', '0x200000000'], `Error: <id> ${notALeaseId}, got "0x200000000"\n`],
      [
        ['lease', 'keep-alive', '10000000000000000'],
        `Error: <id> ${notALeaseId}, got "10000000000000000"\n`,
      ],
      [['put', 'k', 'v', '--lease', 'zz'], `Error: --lease ${notALeaseId}, got "zz"\n`],
      [
        ['-w', 'table', 'lease', 'keep-alive', '100000001'],
        'Error: lease keep-alive prints -w simple or -w json\n',
      ],
    ];
    for (const [args, message] of cases) {
      const run = await ctl(...nowhere, ...args);
      expect({ args, code: run.code, out: run.out }).toEqual({ args, code: 128, out: '' });
      expect(run.err.startsWith(message)).toBe(true);
    }
  });

  it('explains in watch --help that revisions are per group', async () => {
    const printed: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation((text: string) => {
      printed.push(text);
    });
    try {
      expect(await ctl(...nowhere, 'watch', '--help')).toEqual({ code: 0, out: '', err: '' });
    } finally {
      log.mockRestore();
    }
    const help = printed.join('\n');
    expect(help).toContain('eraftkv-ctl watch <key> [range_end]');
    for (const flag of ['--prefix', '--rev', '--prev-kv', '--progress-notify'])
      expect(help).toContain(flag);
    expect(help).toContain('Revisions are per group');
  });

  it('explains in lease --help that a lease belongs to one kv group and that its id carries it', async () => {
    for (const command of [['lease'], ['lease', 'grant'], ['lease', 'keep-alive']]) {
      const printed: string[] = [];
      const log = jest.spyOn(console, 'log').mockImplementation((text: string) => {
        printed.push(text);
      });
      try {
        expect(await ctl(...nowhere, ...command, '--help')).toEqual({ code: 0, out: '', err: '' });
      } finally {
        log.mockRestore();
      }
      const help = printed.join('\n').replace(/\s+/g, ' ');
      expect(help).toContain(`eraftkv-ctl ${command.join(' ')}`);
      expect(help).toContain('A lease belongs to one kv group');
      expect(help).toContain('id = group * 2^32 + n');
      expect(help).toContain('it can hold keys of that group only');
    }
  });

  it("leaves --key after 'lease grant' to the command, and takes the TLS --key before it", () => {
    expect(
      takeTlsFlags(
        [
          '--cacert',
          'ca.pem',
          '--cert',
          'c.pem',
          '--key',
          'c.key',
          'lease',
          'grant',
          '60',
          '--key',
          'app/x',
        ],
        {},
      ),
    ).toEqual({
      rest: ['lease', 'grant', '60', '--key', 'app/x'],
      tls: { cacert: 'ca.pem', cert: 'c.pem', key: 'c.key' },
    });
    // Anywhere else --key is the TLS key, as before.
    expect(takeTlsFlags(['lease', 'revoke', '100000001', '--key=c.key'], {})).toEqual({
      rest: ['lease', 'revoke', '100000001'],
      tls: { cacert: '', cert: '', key: 'c.key' },
    });
    expect(takeTlsFlags(['put', 'grant', 'v', '--key', 'c.key'], {}).tls.key).toBe('c.key');
  });

  it('exits 128 for --endpoints that name no endpoint', async () => {
    expect(await ctl('--endpoints', ' , ', 'get', 'a')).toEqual({
      code: 128,
      out: '',
      err: 'Error: --endpoints is empty\n',
    });
  });

  it('exits 3 (invalid input) for an endpoint that is not host:port, from the flag or ERAFTKV_ENDPOINTS', async () => {
    const run = await ctl('--endpoints', 'meta-1', 'get', 'a');
    expect(run).toEqual({
      code: exitCodes.invalidInput,
      out: '',
      err: 'Error: endpoint "meta-1" is not host:port\n',
    });
    process.env.ERAFTKV_ENDPOINTS = '127.0.0.1:1,meta-2';
    try {
      const fromEnv = await ctl('get', 'a');
      expect(fromEnv.code).toBe(3);
      expect(fromEnv.err).toBe('Error: endpoint "meta-2" is not host:port\n');
    } finally {
      delete process.env.ERAFTKV_ENDPOINTS;
    }
  });

  it('ignores ERAFTKV_* variables that name no global flag, with a warning, and still reads ERAFTKV_ENDPOINTS', async () => {
    // What Kubernetes puts in every pod of a namespace with a Service named eraftkv.
    process.env.ERAFTKV_SERVICE_HOST = '10.0.0.1';
    process.env.ERAFTKV_PORT = 'tcp://10.0.0.1:8088';
    process.env.ERAFTKV_ENDPOINTS = '127.0.0.1:1,meta-2';
    try {
      const run = await ctl('get', 'a');
      expect(run.err).toBe(
        'Warning: ignoring ERAFTKV_PORT, ERAFTKV_SERVICE_HOST: no flag of this name (ERAFTKV_<FLAG> sets --<flag>)\n' +
          'Error: endpoint "meta-2" is not host:port\n',
      );
      expect(run.code).toBe(3);
      // Put back for the next parse.
      expect(process.env.ERAFTKV_SERVICE_HOST).toBe('10.0.0.1');
    } finally {
      delete process.env.ERAFTKV_SERVICE_HOST;
      delete process.env.ERAFTKV_PORT;
      delete process.env.ERAFTKV_ENDPOINTS;
    }
  });
});
