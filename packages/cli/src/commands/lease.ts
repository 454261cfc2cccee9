// lease grant, revoke, timetolive, list and keep-alive, in etcdctl's names and lines. Lease ids
// are printed and read in hex, 16 digits as etcdctl prints them; here the first 8 are the kv
// group the lease belongs to.
import type { Argv } from 'yargs';
import {
  formatLeaseId,
  LeaseNotFoundError,
  leaseGroupOf,
  type LeaseKeepAliveResponse,
} from '@eraftkv/client';
import { positiveInt, textArg, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { json, jsonBytes, printable, renderTable } from '../output';

/** A lease id argument: hex as lease grant prints it (0x optional), or a UsageError naming it. */
export function leaseIdArg(value: unknown, name: string): number {
  const text = textArg(value, name).trim();
  const hex = /^(?:0x)?([0-9a-f]{1,16})$/i.exec(text);
  const id = hex === null ? NaN : Number.parseInt(hex[1], 16);
  try {
    leaseGroupOf(id);
  } catch {
    throw new UsageError(
      `${name} must be a lease id in hex as 'lease grant' prints it (its first 8 digits the group, ` +
        `the last 8 not all 0), got "${text}"`,
    );
  }
  return id;
}

/** A lease as -w json prints it: its id as a number and in hex, and its group. */
function leaseJson(id: number): { id: number; idHex: string; group: number } {
  return { id, idHex: formatLeaseId(id), group: leaseGroupOf(id) };
}

const leaseHelp = [
  'A lease belongs to one kv group, whose leader counts its TTL down; keys put with it',
  "('put <key> <value> --lease <id>') are deleted when it expires or is revoked. Its id carries",
  'its group (id = group * 2^32 + n: in hex, the first 8 of 16 digits), and it can hold keys of',
  'that group only: grant it with --key K to get the group of the key it is meant to hold, or',
  '--group G; without either it goes to the kv group with the lowest id. Ids are printed and',
  'taken in hex, as etcdctl does.',
].join('\n');

export function leaseCommands(yargs: Argv, run: Runner): Argv {
  return yargs.command(
    'lease',
    'Manage leases: grant, revoke, timetolive, list, keep-alive',
    (y) =>
      y
        .command(
          'grant <ttl>',
          'Grant a lease of <ttl> seconds in one kv group',
          (yy) =>
            yy
              .positional('ttl', { type: 'number', describe: 'the TTL in seconds (>= 1)' })
              .option('group', { type: 'number', describe: 'the kv group to grant it in' })
              .option('key', {
                type: 'string',
                describe:
                  'grant it in the group of this key (the key it is meant to hold); the TLS --key goes before "lease"',
              })
              .example(
                '$0 lease grant 60 --key app/session',
                'lease 0000000100000007 granted with TTL(60s)',
              )
              .epilogue(leaseHelp),
          run(async (ctx, args) => grant(ctx, args)),
        )
        .command(
          'revoke <id>',
          'Revoke a lease and delete every key attached to it',
          (yy) =>
            yy
              .positional('id', { type: 'string', describe: 'the lease id (hex)' })
              .example('$0 lease revoke 0000000100000007', 'lease 0000000100000007 revoked')
              .epilogue(leaseHelp),
          run(async (ctx, args) => {
            const id = leaseIdArg(args.id, '<id>');
            const { revision } = await ctx.client().leaseRevoke(id);
            if (ctx.writeOut === 'json') ctx.io.out(json({ ...leaseJson(id), revision }));
            else ctx.io.out(`lease ${formatLeaseId(id)} revoked\n`);
            return exitCodes.success;
          }),
        )
        .command(
          'timetolive <id>',
          'Show the TTL a lease was granted with, the seconds it has left and (--keys) its keys',
          (yy) =>
            yy
              .positional('id', { type: 'string', describe: 'the lease id (hex)' })
              .option('keys', {
                type: 'boolean',
                default: false,
                describe: 'list the keys attached to the lease',
              })
              .example(
                '$0 lease timetolive 0000000100000007 --keys',
                'lease 0000000100000007 granted with TTL(60s), remaining(52s), attached keys([a b])',
              )
              .epilogue(leaseHelp),
          run(async (ctx, args) => timeToLive(ctx, args)),
        )
        .command(
          'list',
          'List the leases of one kv group (--group) or of every kv group',
          (yy) =>
            yy
              .option('group', { type: 'number', describe: 'the kv group (default: every one)' })
              .example('$0 lease list -w table', '')
              .epilogue(leaseHelp),
          run(async (ctx, args) => list(ctx, args)),
        )
        .command(
          'keep-alive <id>',
          'Keep a lease alive until Ctrl-C (exit 0) or until it is gone (exit 1)',
          (yy) =>
            yy
              .positional('id', { type: 'string', describe: 'the lease id (hex)' })
              .option('once', {
                type: 'boolean',
                default: false,
                describe: 'keep it alive once and exit',
              })
              .example(
                '$0 lease keep-alive 0000000100000007',
                'lease 0000000100000007 keepalived with TTL(60)',
              )
              .epilogue(
                `${leaseHelp}\n\nA keep-alive goes every third of the TTL to the group's leader, followed when ` +
                  'leadership moves; the command fails (exit 2) when no leader answers within ' +
                  '--command-timeout or, when that is later, before the lease would expire.',
              ),
          run(async (ctx, args) => keepAlive(ctx, args)),
        )
        .demandCommand(1, 'lease needs a subcommand: grant, revoke, timetolive, list or keep-alive')
        .epilogue(leaseHelp),
    () => {},
  );
}

async function grant(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const ttl = positiveInt(args.ttl, '<ttl>');
  if (args.group !== undefined && args.key !== undefined)
    throw new UsageError('--group and --key exclude each other');
  const lease = await ctx.client().leaseGrant(ttl, {
    ...(args.group === undefined ? {} : { group: positiveInt(args.group, '--group') }),
    ...(args.key === undefined ? {} : { key: textArg(args.key, '--key') }),
  });
  if (ctx.writeOut === 'json')
    ctx.io.out(json({ ...leaseJson(lease.id), ttl: lease.ttlSeconds, revision: lease.revision }));
  else ctx.io.out(`lease ${formatLeaseId(lease.id)} granted with TTL(${lease.ttlSeconds}s)\n`);
  return exitCodes.success;
}

async function timeToLive(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const id = leaseIdArg(args.id, '<id>');
  const withKeys = args.keys === true;
  const lease = await ctx.client().leaseTimeToLive(id, { keys: withKeys });
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      json({
        ...leaseJson(id),
        ttl: lease.ttlSeconds,
        grantedTtl: lease.grantedTtlSeconds,
        keys: lease.keys.map((k) => jsonBytes(k).text),
        keysBase64: lease.keys.map((k) => jsonBytes(k).base64),
      }),
    );
  } else if (lease.ttlSeconds < 0) {
    ctx.io.out(`lease ${formatLeaseId(id)} already expired\n`);
  } else {
    const keys = withKeys ? `, attached keys([${lease.keys.map(printable).join(' ')}])` : '';
    ctx.io.out(
      `lease ${formatLeaseId(id)} granted with TTL(${lease.grantedTtlSeconds}s), ` +
        `remaining(${lease.ttlSeconds}s)${keys}\n`,
    );
  }
  return exitCodes.success;
}

async function list(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const group = args.group === undefined ? undefined : positiveInt(args.group, '--group');
  const leases = await ctx.client().leases(group === undefined ? {} : { group });
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      json({
        count: leases.length,
        leases: leases.map((l) => ({
          ...leaseJson(l.id),
          ttl: l.ttlSeconds,
          grantedTtl: l.grantedTtlSeconds,
        })),
      }),
    );
  } else if (ctx.writeOut === 'table') {
    ctx.io.out(
      renderTable(
        ['ID', 'GROUP', 'TTL', 'GRANTED TTL'],
        leases.map((l) => [
          formatLeaseId(l.id),
          String(l.group),
          String(l.ttlSeconds),
          String(l.grantedTtlSeconds),
        ]),
      ),
    );
  } else {
    ctx.io.out(`found ${leases.length} leases\n`);
    for (const l of leases) ctx.io.out(`${formatLeaseId(l.id)}\n`);
  }
  return exitCodes.success;
}

async function keepAlive(ctx: Context, args: Record<string, unknown>): Promise<number> {
  if (ctx.writeOut === 'table')
    throw new UsageError('lease keep-alive prints -w simple or -w json');
  const id = leaseIdArg(args.id, '<id>');
  const print = (answer: LeaseKeepAliveResponse): void =>
    ctx.io.out(
      ctx.writeOut === 'json'
        ? `${JSON.stringify({ ...leaseJson(answer.id), ttl: answer.ttlSeconds })}\n`
        : `lease ${formatLeaseId(answer.id)} keepalived with TTL(${answer.ttlSeconds})\n`,
    );
  const stop = new AbortController();
  const interrupted = (): void => stop.abort();
  process.once('SIGINT', interrupted);
  try {
    if (args.once === true) {
      print({ id, ttlSeconds: await ctx.client().leaseKeepAliveOnce(id) });
      return exitCodes.success;
    }
    for await (const answer of ctx.client().leaseKeepAlive(id, { signal: stop.signal }))
      print(answer);
  } catch (err) {
    if (!(err instanceof LeaseNotFoundError)) throw err;
    ctx.io.err(`lease ${formatLeaseId(id)} expired or revoked\n`);
    return exitCodes.error;
  } finally {
    process.removeListener('SIGINT', interrupted);
  }
  return exitCodes.success;
}
