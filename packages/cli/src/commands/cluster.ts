// init, group add/remove/list, slot move (and the ERaftKV aliases add_group, remove_group,
// query_groups, set_slot).
import type { Argv } from 'yargs';
import { formatSlotRanges, parseSlotRanges, type ClusterView } from '@eraftkv/client';
import { SingleBar } from 'cli-progress';
import { parseDuration, positiveInt, textArg, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { json, renderTable } from '../output';

/** A group's moving slots and where they go: "512-575 -> 2". */
function describeMoves(g: ClusterView['groups'][number]): string {
  return g.migratingTo.map((m) => `${formatSlotRanges(m.slots)} -> ${m.target}`).join('; ');
}

function printCluster(ctx: Context, view: ClusterView): void {
  const groups = [...view.groups].sort((a, b) => a.id - b.id);
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      json({
        configVersion: view.configVersion,
        slotCount: view.slotCount,
        groups: groups.map((g) => ({
          id: g.id,
          role: g.id === 0 ? 'meta' : 'kv',
          servers: g.servers,
          slots: formatSlotRanges(g.slots),
          slotCount: g.slots.length,
          migrating: formatSlotRanges(g.migratingSlots),
          migratingTo: g.migratingTo.map((m) => ({
            target: m.target,
            slots: formatSlotRanges(m.slots),
          })),
        })),
      }),
    );
    return;
  }
  const rows = groups.map((g) => [
    g.id === 0 ? '0 (meta)' : String(g.id),
    g.servers.map((s) => `${s.id}=${s.address}`).join(','),
    g.id === 0 ? '-' : `${formatSlotRanges(g.slots) || 'none'} (${g.slots.length})`,
    describeMoves(g) || '-',
  ]);
  if (ctx.writeOut === 'table') {
    ctx.io.out(renderTable(['GROUP', 'SERVERS', 'SLOTS', 'MIGRATING'], rows));
  } else {
    for (const r of rows)
      ctx.io.out(
        `group ${r[0]}: servers ${r[1]}; slots ${r[2]}${r[3] !== '-' ? `; migrating ${r[3]}` : ''}\n`,
      );
  }
  ctx.io.out(
    ctx.writeOut === 'table'
      ? `config version ${view.configVersion}, ${view.slotCount} slots\n`
      : `config version ${view.configVersion}, ${view.slotCount} slots\n`,
  );
}

export function clusterCommands(yargs: Argv, run: Runner): Argv {
  return yargs
    .command(
      'init',
      'Initialise a new cluster (once): fixes the number of slots',
      (y) =>
        y
          .option('slots', {
            type: 'number',
            default: 1024,
            describe: 'number of slots (1..65536)',
          })
          .example('$0 init --slots 1024', ''),
      run(async (ctx, args) => {
        const view = await ctx.client().initCluster(positiveInt(args.slots, '--slots'));
        printCluster(ctx, view);
        return exitCodes.success;
      }),
    )
    .command(
      'group',
      'Manage kv groups: add, remove, list',
      (y) =>
        y
          .command(
            'add <gid> <addresses>',
            'Register kv group <gid> served by <addresses> (host:port,... of its nodes 1..n)',
            (yy) =>
              yy
                .positional('gid', { type: 'number', describe: 'the group id (>= 1)' })
                .positional('addresses', {
                  type: 'string',
                  describe: 'comma-separated host:port of its nodes',
                })
                .example('$0 group add 2 127.0.0.1:7098,127.0.0.1:7099,127.0.0.1:7100', ''),
            run(async (ctx, args) => addGroup(ctx, args)),
          )
          .command(
            'remove <gid>',
            'Unregister kv group <gid> (it must own no slots)',
            (yy) => yy.positional('gid', { type: 'number' }).example('$0 group remove 2', ''),
            run(async (ctx, args) => {
              printCluster(ctx, await ctx.client().removeGroup(positiveInt(args.gid, '<gid>')));
              return exitCodes.success;
            }),
          )
          .command(
            'list',
            'Show every group, its servers and its slots',
            (yy) => yy.example('$0 group list -w table', ''),
            run(async (ctx) => {
              printCluster(ctx, await ctx.client().cluster());
              return exitCodes.success;
            }),
          )
          .demandCommand(1, 'group needs a subcommand: add, remove or list'),
      () => {},
    )
    .command(
      ['add_group <gid> <addresses>'],
      false,
      (y) => y.positional('gid', { type: 'number' }).positional('addresses', { type: 'string' }),
      run(async (ctx, args) => addGroup(ctx, args)),
    )
    .command(
      ['remove_group <gid>'],
      false,
      (y) => y.positional('gid', { type: 'number' }),
      run(async (ctx, args) => {
        printCluster(ctx, await ctx.client().removeGroup(positiveInt(args.gid, '<gid>')));
        return exitCodes.success;
      }),
    )
    .command(
      ['query_groups'],
      false,
      (y) => y,
      run(async (ctx) => {
        printCluster(ctx, await ctx.client().cluster());
        return exitCodes.success;
      }),
    )
    .command(
      'slot',
      'Manage slots: move',
      (y) =>
        y
          .command(
            'move <gid> <range>',
            'Give slots to group <gid> with their keys (in batches; progress on stderr)',
            (yy) =>
              yy
                .positional('gid', { type: 'number', describe: 'the group that gets the slots' })
                .positional('range', {
                  type: 'string',
                  describe: 'slots: 0-511, or 7, or 0-9,20-29',
                })
                .option('wait', {
                  type: 'string',
                  default: '30m',
                  describe:
                    'how long to wait for the move (it goes on in the meta group if this runs out; group list shows it)',
                })
                .example('$0 slot move 2 512-1023', 'group 2 takes over slots 512..1023'),
            run(async (ctx, args) => moveSlots(ctx, args)),
          )
          .demandCommand(1, 'slot needs a subcommand: move'),
      () => {},
    )
    .command(
      ['set_slot <gid> <range>'],
      false,
      (y) => y.positional('gid', { type: 'number' }).positional('range', { type: 'string' }),
      run(async (ctx, args) => moveSlots(ctx, args)),
    );
}

async function addGroup(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const addresses = textArg(args.addresses, '<addresses>')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  if (addresses.length === 0) throw new UsageError('<addresses> is empty');
  for (const a of addresses)
    if (!/^[^\s:]+:\d{1,5}$/.test(a)) throw new UsageError(`"${a}" is not host:port`);
  printCluster(ctx, await ctx.client().addGroup(positiveInt(args.gid, '<gid>'), addresses));
  return exitCodes.success;
}

/** "12.3 MB", "512 KB", "40 B". */
function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(0)} KB`;
  return `${bytes} B`;
}

/**
 * Keys and bytes copied since a move began, from the meta leader's running totals
 * (ClusterView.slotMoveCopied): a total that goes down means another node now leads (its own
 * totals start over), so what was counted so far is kept and counting goes on from its totals.
 */
class CopiedSinceStart {
  private base: { keys: number; bytes: number };
  private carried = { keys: 0, bytes: 0 };
  private last = { keys: 0, bytes: 0 };

  constructor(start: ClusterView) {
    this.base = start.slotMoveCopied;
  }

  update(view: ClusterView): { keys: number; bytes: number } {
    const now = view.slotMoveCopied;
    if (now.keys < this.base.keys || now.bytes < this.base.bytes) {
      this.carried = {
        keys: this.carried.keys + this.last.keys,
        bytes: this.carried.bytes + this.last.bytes,
      };
      this.base = now;
    }
    this.last = { keys: now.keys - this.base.keys, bytes: now.bytes - this.base.bytes };
    return {
      keys: this.carried.keys + this.last.keys,
      bytes: this.carried.bytes + this.last.bytes,
    };
  }
}

/** What a move did, for its summary line. */
export interface MoveResult {
  readonly view: ClusterView;
  readonly moved: number;
  readonly keys: number;
  readonly bytes: number;
  readonly seconds: number;
}

/** "moved 512 slot(s) to group 2 in 19.1 s: 49998 keys (13.3 MB), 2617 keys/s". */
export function describeMoveResult(gid: number, r: MoveResult): string {
  const rate = r.seconds > 0 ? Math.round(r.keys / r.seconds) : r.keys;
  return (
    `moved ${r.moved} slot(s) to group ${gid} in ${r.seconds.toFixed(1)} s: ` +
    `${r.keys} keys (${formatBytes(r.bytes)}), ${rate} keys/s`
  );
}

/**
 * Gives `slots` to group `gid` (SlotMove, waiting up to `waitMs`), with a progress bar on stderr
 * (a terminal only): the slots of the request the target owns, polled from the topology (the
 * meta group moves them a batch at a time), and the keys and bytes copied so far (the meta
 * leader's totals). Returns the final view, how many slots moved and what was copied.
 */
export async function moveWithProgress(
  ctx: Context,
  gid: number,
  slots: readonly number[],
  waitMs: number,
): Promise<MoveResult> {
  const client = ctx.client();
  const before = await client.cluster();
  const copied = new CopiedSinceStart(before);
  const pending = new Set(
    slots.filter((slot) => !before.groups.some((g) => g.id === gid && g.slots.includes(slot))),
  );
  const bar = new SingleBar({
    format:
      `slot move to group ${gid} [{bar}] {value}/{total} slots | {keys} keys, {size} | ` +
      '{keyRate} keys/s | ETA {eta_formatted}',
    hideCursor: true,
    stream: process.stderr,
  });
  bar.start(pending.size, 0, { keys: 0, size: formatBytes(0), keyRate: 0 });
  const started = Date.now();
  let done = false;
  const moving = client.moveSlots(gid, slots, { deadlineMs: waitMs }).finally(() => {
    done = true;
  });
  const watching = (async () => {
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      if (done) break;
      const view = await client.cluster({ deadlineMs: 2000 }).catch(() => null);
      if (view === null) continue;
      const owned = new Set(view.groups.find((g) => g.id === gid)?.slots ?? []);
      const moved = [...pending].filter((slot) => owned.has(slot)).length;
      const { keys, bytes } = copied.update(view);
      const seconds = (Date.now() - started) / 1000;
      bar.update(moved, {
        keys,
        size: formatBytes(bytes),
        keyRate: Math.round(keys / Math.max(seconds, 0.001)),
      });
    }
  })();
  try {
    const view = await moving;
    const { keys, bytes } = copied.update(view);
    bar.update(pending.size, { keys, size: formatBytes(bytes) });
    return { view, moved: pending.size, keys, bytes, seconds: (Date.now() - started) / 1000 };
  } finally {
    await watching;
    bar.stop();
  }
}

async function moveSlots(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const gid = positiveInt(args.gid, '<gid>');
  let slots: number[];
  try {
    slots = parseSlotRanges(textArg(args.range, '<range>'));
  } catch (err) {
    throw new UsageError(`<range>: ${(err as Error).message}`);
  }
  const waitMs = parseDuration(typeof args.wait === 'string' ? args.wait : '30m', '--wait');
  const result = await moveWithProgress(ctx, gid, slots, waitMs);
  if (ctx.writeOut !== 'json') ctx.io.out(`${describeMoveResult(gid, result)}\n`);
  printCluster(ctx, result.view);
  return exitCodes.success;
}
