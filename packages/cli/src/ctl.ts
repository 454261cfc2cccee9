// eraftkv-ctl: the command-line tool, in etcdctl's conventions (global --endpoints, -w simple|json|
// table, --command-timeout, etcdctl's exit codes). runCtl never exits the process itself, so that
// tests can run it in process.
import yargs, { type Argv } from 'yargs';
import { authCommands } from './commands/auth';
import { balanceCommands } from './commands/balance';
import { benchCommands } from './commands/bench';
import { clusterCommands } from './commands/cluster';
import { endpointCommands } from './commands/endpoint';
import { kvCommands } from './commands/kv';
import { leaseCommands } from './commands/lease';
import { membershipCommands } from './commands/membership';
import { snapshotCommands } from './commands/snapshot';
import { watchCommands } from './commands/watch';
import { Context, defaultEndpoints, type GlobalArgs, type Runner } from './context';
import { exitCodeOf, exitCodes, UsageError } from './exit-codes';
import { processIo, writeOutChoices, type Io, type WriteOut } from './output';
import { hideUnknownEnvironment, ignoredEnvironmentWarning } from '@eraftkv/protocol';

export const ctlVersion = '0.1.0';

/** The TLS flags, in etcdctl's names; taken out of argv before yargs sees it (see takeTlsFlags). */
const tlsFlags = ['cacert', 'cert', 'key'] as const;
/** Their environment variables. */
const tlsEnvNames = ['ERAFTKV_CACERT', 'ERAFTKV_CERT', 'ERAFTKV_KEY'] as const;

/**
 * Takes --cacert, --cert and --key (or --flag=value) out of argv, with ERAFTKV_CACERT... from
 * the environment as defaults. They are read by hand because yargs would merge --key with the
 * <key> argument of put, get and del. 'lease grant' has a --key of its own (the key whose group
 * the lease goes to): after those words --key is left to it, and the TLS key goes before them
 * (or in ERAFTKV_KEY).
 */
export function takeTlsFlags(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { rest: string[]; tls: Pick<GlobalArgs, 'cacert' | 'cert' | 'key'> } {
  const found: Record<(typeof tlsFlags)[number], string> = {
    cacert: env.ERAFTKV_CACERT ?? '',
    cert: env.ERAFTKV_CERT ?? '',
    key: env.ERAFTKV_KEY ?? '',
  };
  const rest: string[] = [];
  let keyIsLeaseGrants = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === 'grant' && argv[i - 1] === 'lease') keyIsLeaseGrants = true;
    const flag = tlsFlags.find(
      (f) => (f !== 'key' || !keyIsLeaseGrants) && (arg === `--${f}` || arg.startsWith(`--${f}=`)),
    );
    if (flag === undefined) {
      rest.push(arg);
      continue;
    }
    const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[++i];
    if (value === undefined || value === '') throw new UsageError(`--${flag} needs a file name`);
    found[flag] = value;
  }
  return { rest, tls: found };
}

export async function runCtl(argv: readonly string[], io: Io = processIo): Promise<number> {
  let exitCode: number = exitCodes.success;
  let tls: Pick<GlobalArgs, 'cacert' | 'cert' | 'key'>;
  try {
    const taken = takeTlsFlags(argv);
    argv = taken.rest;
    tls = taken.tls;
  } catch (err) {
    io.err(`Error: ${(err as Error).message}\n`);
    return exitCodeOf(err);
  }
  const run: Runner = (work) => async (args) => {
    let ctx: Context | null = null;
    try {
      ctx = new Context(
        {
          endpoints: String(args.endpoints),
          writeOut: args.writeOut as WriteOut,
          commandTimeout: String(args.commandTimeout),
          ...tls,
        } satisfies GlobalArgs,
        io,
      );
      exitCode = await work(ctx, args);
    } catch (err) {
      io.err(`Error: ${(err as Error).message}\n`);
      exitCode = exitCodeOf(err);
    } finally {
      ctx?.close();
    }
  };
  let parser: Argv = yargs([...argv])
    .scriptName('eraftkv-ctl')
    .usage('$0 <command> [options]\n\nTalk to an eraftkv cluster (meta servers at --endpoints).')
    .env('ERAFTKV')
    .option('endpoints', {
      type: 'string',
      default: defaultEndpoints,
      describe: 'meta server addresses, comma-separated (env ERAFTKV_ENDPOINTS)',
      global: true,
    })
    .option('write-out', {
      alias: 'w',
      choices: writeOutChoices,
      default: 'simple',
      describe: 'output format',
      global: true,
    })
    .option('command-timeout', {
      type: 'string',
      default: '5s',
      describe: 'how long a command may take, retries included (5s, 500ms, 2m)',
      global: true,
    });
  parser = kvCommands(parser, run);
  parser = watchCommands(parser, run);
  parser = leaseCommands(parser, run);
  parser = clusterCommands(parser, run);
  parser = balanceCommands(parser, run);
  parser = membershipCommands(parser, run);
  parser = endpointCommands(parser, run);
  parser = snapshotCommands(parser, run);
  parser = authCommands(parser, run);
  parser = benchCommands(parser, run);
  parser = parser
    .demandCommand(1, 'name a command (see --help)')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(ctlVersion)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .epilogue(
      [
        'Examples:',
        '  eraftkv-ctl put hello world && eraftkv-ctl get hello',
        '  eraftkv-ctl scan a z --limit 10 -w table',
        '  eraftkv-ctl watch app/ --prefix --prev-kv',
        '  eraftkv-ctl lease grant 60 --key app/session   (then put app/session v --lease <id>)',
        '  eraftkv-ctl group list -w table',
        '  eraftkv-ctl member list --group 1',
        '  eraftkv-ctl endpoint health --cluster',
        '  eraftkv-ctl role grant-permission readers read app/ --prefix',
        '',
        'TLS (a cluster started with --cert-file...): --cacert FILE (the CA of the servers),',
        '  --cert FILE --key FILE (a client certificate, for --client-cert-auth); or ERAFTKV_CACERT,',
        '  ERAFTKV_CERT, ERAFTKV_KEY.',
        '',
        'Exit codes: 0 ok, 1 error (for get: key not found), 2 cluster unavailable or bad connection,',
        '3 invalid input, 128 bad arguments.',
      ].join('\n'),
    )
    .exitProcess(false)
    .fail((message, err) => {
      // Stop at the first usage error: nothing runs after it.
      throw err ?? new UsageError(message);
    });
  // yargs maps every ERAFTKV_* variable to an option (and ERAFTKV_KEY onto put's <key>): only
  // those of the global flags stay in its sight while it parses. The TLS ones were read by
  // takeTlsFlags; any other is warned about, as etcdctl does.
  const environment = hideUnknownEnvironment(['endpoints', 'write-out', 'command-timeout']);
  const warning = ignoredEnvironmentWarning(
    environment.ignored.filter((name) => !(tlsEnvNames as readonly string[]).includes(name)),
  );
  if (warning !== '') io.err(`Warning: ${warning}\n`);
  try {
    await parser.parseAsync();
  } catch (err) {
    io.err(
      `Error: ${(err as Error).message}\nRun 'eraftkv-ctl --help' (or '<command> --help') for usage.\n`,
    );
    exitCode = exitCodes.badArgs;
  } finally {
    environment.restore();
  }
  return exitCode;
}
