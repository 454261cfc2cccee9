// put, get, del, scan (and the ERaftKV aliases put_kv, get_kv).
import type { Argv } from 'yargs';
import { formatLeaseId } from '@eraftkv/client';
import { positiveInt, textArg, type Runner } from '../context';
import { exitCodes } from '../exit-codes';
import { json, jsonBytes, printable, renderTable } from '../output';
import { leaseIdArg } from './lease';

export function kvCommands(yargs: Argv, run: Runner): Argv {
  return yargs
    .command(
      ['put <key> <value>', 'put_kv <key> <value>'],
      'Write a value under a key',
      (y) =>
        y
          .positional('key', { type: 'string', describe: 'the key' })
          .positional('value', { type: 'string', describe: 'the value (may be empty)' })
          .option('lease', {
            type: 'string',
            describe:
              "attach the key to this lease (hex id from 'lease grant', of the key's group): the key is deleted when the lease expires or is revoked",
          })
          .example('$0 put hello world', 'prints OK')
          .example('$0 put hello world --lease 0000000100000007', 'deleted with the lease')
          .example(
            '$0 put hello world -w json',
            'prints {"ok":true,"key":"hello","group":1,"revision":42}: the group that took the write and the revision it produced',
          ),
      run(async (ctx, args) => {
        const key = textArg(args.key, '<key>');
        const lease = args.lease === undefined ? undefined : leaseIdArg(args.lease, '--lease');
        const header = await ctx
          .client()
          .put(key, textArg(args.value ?? '', '<value>'), lease === undefined ? {} : { lease });
        if (ctx.writeOut === 'json')
          ctx.io.out(
            json({
              ok: true,
              key,
              ...header,
              ...(lease === undefined ? {} : { lease, leaseHex: formatLeaseId(lease) }),
            }),
          );
        else ctx.io.out('OK\n');
        return exitCodes.success;
      }),
    )
    .command(
      ['get <key>', 'get_kv <key>'],
      'Read the value of a key (exit code 1 when it does not exist)',
      (y) =>
        y
          .positional('key', { type: 'string', describe: 'the key' })
          .option('consistency', {
            choices: ['l', 's'],
            default: 'l',
            describe:
              'l: linearizable (through the leader), s: serializable (any replica, may be stale)',
          })
          .example('$0 get hello', 'prints the value')
          .example('$0 get hello -w json', 'prints {"key": ..., "found": ..., "value": ...}'),
      run(async (ctx, args) => {
        const key = textArg(args.key, '<key>');
        const value = await ctx.client().get(key, { serializable: args.consistency === 's' });
        if (ctx.writeOut === 'json') {
          ctx.io.out(
            json(
              value === undefined
                ? { key, found: false }
                : {
                    key,
                    found: true,
                    value: jsonBytes(value).text,
                    valueBase64: jsonBytes(value).base64,
                  },
            ),
          );
        } else if (value !== undefined) {
          ctx.io.out(
            ctx.writeOut === 'table'
              ? renderTable(['KEY', 'VALUE'], [[key, printable(value)]])
              : `${printable(value)}\n`,
          );
        }
        if (value === undefined) {
          if (ctx.writeOut !== 'json') ctx.io.err('key not found\n');
          return exitCodes.error;
        }
        return exitCodes.success;
      }),
    )
    .command(
      'del <key>',
      'Delete a key (prints how many keys were deleted: 0 or 1)',
      (y) =>
        y
          .positional('key', { type: 'string', describe: 'the key' })
          .example('$0 del hello', 'prints 1'),
      run(async (ctx, args) => {
        const key = textArg(args.key, '<key>');
        const { results, header } = await ctx.client().batchWithHeader([{ type: 'del', key }]);
        const deleted = results[0].type === 'del' && results[0].deleted;
        if (ctx.writeOut === 'json') ctx.io.out(json({ key, deleted: deleted ? 1 : 0, ...header }));
        else ctx.io.out(`${deleted ? 1 : 0}\n`);
        return exitCodes.success;
      }),
    )
    .command(
      'scan <start> [end]',
      'List the keys in [start, end) in key-byte order, with their values',
      (y) =>
        y
          .positional('start', { type: 'string', describe: 'the first key (inclusive)' })
          .positional('end', { type: 'string', describe: 'the end (exclusive); omit for no end' })
          .option('limit', {
            type: 'number',
            default: 1000,
            describe:
              "at most this many pairs (the client pages through the servers' per-answer bounds; a line on stderr says when more remain)",
          })
          .option('keys-only', {
            type: 'boolean',
            default: false,
            describe: 'print keys without values',
          })
          .example('$0 scan user: user;', 'every key starting with "user:"')
          .example('$0 scan a --limit 10 -w table', 'the first 10 keys from "a" on'),
      run(async (ctx, args) => {
        const limit = positiveInt(args.limit, '--limit');
        const end = args.end === undefined ? undefined : textArg(args.end, '[end]');
        const result = await ctx.client().scan(textArg(args.start, '<start>'), end, { limit });
        const keysOnly = args.keysOnly === true;
        if (ctx.writeOut === 'json') {
          ctx.io.out(
            json({
              count: result.kvs.length,
              more: result.more,
              kvs: result.kvs.map((kv) => ({
                key: jsonBytes(kv.key).text,
                keyBase64: jsonBytes(kv.key).base64,
                ...(keysOnly
                  ? {}
                  : { value: jsonBytes(kv.value).text, valueBase64: jsonBytes(kv.value).base64 }),
              })),
            }),
          );
        } else if (ctx.writeOut === 'table') {
          ctx.io.out(
            renderTable(
              keysOnly ? ['KEY'] : ['KEY', 'VALUE'],
              result.kvs.map((kv) =>
                keysOnly ? [printable(kv.key)] : [printable(kv.key), printable(kv.value)],
              ),
            ),
          );
        } else {
          for (const kv of result.kvs) {
            ctx.io.out(`${printable(kv.key)}\n`);
            if (!keysOnly) ctx.io.out(`${printable(kv.value)}\n`);
          }
        }
        // The client pages through the servers' per-answer bounds up to --limit: only the limit
        // stops it early, and a listing cut short says so (on stderr: stdout stays the pairs).
        const last = result.kvs[result.kvs.length - 1];
        if (result.more && last !== undefined && ctx.writeOut !== 'json') {
          ctx.io.err(`more keys remain after ${printable(last.key)}; use --limit\n`);
        }
        return exitCodes.success;
      }),
    );
}
