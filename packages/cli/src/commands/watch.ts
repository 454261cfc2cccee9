// watch: the changes of a key, a range or a prefix, printed as they come until Ctrl-C, in
// etcdctl's output: for each change its type, then (--prev-kv) the previous key and value, then
// the key and the value; with -w json one line per answer of a group.
import type { Argv } from 'yargs';
import {
  WatchCompactedError,
  type WatchBatch,
  type WatchEvent,
  type WatchSlotMark,
} from '@eraftkv/client';
import { rangeEndOf, textArg, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { jsonBytes, printable } from '../output';

export function watchCommands(yargs: Argv, run: Runner): Argv {
  return yargs.command(
    'watch <key> [range_end]',
    'Print the changes of a key, a range or a prefix as they come, until Ctrl-C',
    (y) =>
      y
        .positional('key', { type: 'string', describe: 'the key (with --prefix: the prefix)' })
        .positional('range_end', {
          type: 'string',
          describe: 'watch the range [key, range_end) instead of the key alone',
        })
        .option('prefix', {
          type: 'boolean',
          default: false,
          describe: 'watch every key that starts with <key>',
        })
        .option('rev', {
          type: 'number',
          default: 0,
          describe:
            'the revision to start from, in every group watched (0: from now); revisions are per group',
        })
        .option('prev-kv', {
          type: 'boolean',
          default: false,
          describe: 'print the previous key and value of each change',
        })
        .option('progress-notify', {
          type: 'boolean',
          default: false,
          describe: 'print "progress notify: <rev>" lines when nothing changes for a while',
        })
        .example('$0 watch hello', 'PUT, hello, world for each put of hello')
        .example('$0 watch app/ --prefix -w json', 'one JSON line per answer of each group')
        .epilogue(
          [
            'Revisions are per group: each kv group numbers its own changes (its log index), so one',
            'number is another point in time in each group. Every kv group is watched, for a key as',
            'for a range (a slot may move between groups), and --rev starts each of them at that',
            'revision of its own. The changes of a key come in the order they were applied, across a',
            'slot move too; those of different keys in revision order within a group, interleaved',
            'across groups. -w json prints each answer with its group and revision: every change of',
            'that group up to it has been printed. A slot that moves between groups is noted on',
            'stderr ("slot 3 left group 1 at revision 40 (topology version 7)").',
            '',
            'A stream that breaks is opened again where it stood, on another member if need be; the',
            'watch fails (exit 1, or 2 when a group cannot be reached within --command-timeout) when',
            'that cannot be done, or when --rev is older than the history a group keeps. Ctrl-C ends',
            'it (exit 0).',
          ].join('\n'),
        ),
    run((ctx, args) => watch(ctx, args)),
  );
}

async function watch(ctx: Context, args: Record<string, unknown>): Promise<number> {
  if (ctx.writeOut === 'table') throw new UsageError('watch prints -w simple or -w json');
  const key = Buffer.from(textArg(args.key, '<key>'), 'utf8');
  const rangeEnd = rangeEndOf(key, { end: args.range_end, prefix: args.prefix }, '[range_end]');
  const rev = Number(args.rev);
  if (!Number.isSafeInteger(rev) || rev < 0)
    throw new UsageError(`--rev must be a non-negative integer, got ${String(args.rev)}`);
  const prevKv = args.prevKv === true;
  const stop = new AbortController();
  const interrupted = (): void => stop.abort();
  process.once('SIGINT', interrupted);
  try {
    const batches = ctx.client().watch(key, {
      ...(rangeEnd.length > 0 ? { rangeEnd } : {}),
      startRevision: rev,
      prevKv,
      progressNotify: args.progressNotify === true,
      signal: stop.signal,
    });
    for await (const batch of batches) {
      if (ctx.writeOut === 'json') {
        ctx.io.out(batchJson(batch));
        continue;
      }
      ctx.io.out(batchLines(batch, prevKv));
      // A slot move is no change of a key: a note beside etcdctl's lines, not among them.
      for (const mark of batch.slotMarks) ctx.io.err(slotMarkNote(batch.group, mark));
    }
  } catch (err) {
    if (!(err instanceof WatchCompactedError)) throw err;
    ctx.io.err(
      `Error: ${err.message}; watch again with --rev ${err.compactRevision} (the changes before ` +
        'it are gone) or without --rev, from now\n',
    );
    return exitCodes.error;
  } finally {
    process.removeListener('SIGINT', interrupted);
  }
  return exitCodes.success;
}

/** etcdctl's lines: the type, the previous key and value (--prev-kv), the key and the value. */
function batchLines(batch: WatchBatch, prevKv: boolean): string {
  if (batch.progress) return `progress notify: ${batch.revision} (group ${batch.group})\n`;
  let text = '';
  for (const e of batch.events) {
    text += `${e.type === 'put' ? 'PUT' : 'DELETE'}\n`;
    if (prevKv && e.prevValue !== undefined)
      text += `${printable(e.key)}\n${printable(e.prevValue)}\n`;
    text += `${printable(e.key)}\n${printable(e.value)}\n`;
  }
  return text;
}

function slotMarkNote(group: number, mark: WatchSlotMark): string {
  const what = mark.type === 'slot-left' ? `left group ${group}` : `arrived in group ${group}`;
  return `slot ${mark.slot} ${what} at revision ${mark.revision} (topology version ${mark.configVersion})\n`;
}

/**
 * One line: the group, its revision, the kind of answer, the events (bytes as `-w json` gives
 * them) and the slots the group stopped or began writing.
 */
function batchJson(batch: WatchBatch): string {
  return `${JSON.stringify({
    group: batch.group,
    revision: batch.revision,
    created: batch.created,
    progress: batch.progress,
    events: batch.events.map(eventJson),
    slotMarks: batch.slotMarks,
  })}\n`;
}

function eventJson(e: WatchEvent): Record<string, unknown> {
  return {
    type: e.type === 'put' ? 'PUT' : 'DELETE',
    key: jsonBytes(e.key).text,
    keyBase64: jsonBytes(e.key).base64,
    value: jsonBytes(e.value).text,
    valueBase64: jsonBytes(e.value).base64,
    revision: e.revision,
    ...(e.prevValue === undefined
      ? {}
      : { prevValue: jsonBytes(e.prevValue).text, prevValueBase64: jsonBytes(e.prevValue).base64 }),
  };
}
