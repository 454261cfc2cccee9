// balance [--apply] [--drain <gid>]: plans slot moves that even out the number of slots per kv
// group (and, with --drain, empty one group so that it can be removed), prints the plan, and with
// --apply carries it out one move at a time with slot move's progress bar. A dry run by default.
// Slots that hold keys attached to leases cannot move (docs/leases.md): the plan leaves them where
// they are and says so.
import type { Argv } from 'yargs';
import {
  formatLeaseId,
  formatSlotRanges,
  type ClusterView,
  type EraftKvClient,
} from '@eraftkv/client';
import { slotOfKey } from '@eraftkv/protocol';
import { parseDuration, positiveInt, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { json } from '../output';
import { describeMoveResult, moveWithProgress } from './cluster';

/** One step of a plan: give `slots` (owned by `from`, or by nobody when 0) to `to`. */
export interface PlannedMove {
  readonly from: number;
  readonly to: number;
  readonly slots: readonly number[];
}

/** Slots that hold keys attached to leases, each with one of those leases: they stay. */
export type PinnedSlots = ReadonlyMap<number, number>;

/**
 * The moves that leave every kv group (but `drain`) with slotCount / n slots, give or take one,
 * moving as few slots as possible: groups above their share give their highest slots to the
 * groups below theirs; slots without an owner and every slot of `drain` go to the groups below
 * their share. A `pinned` slot (it holds leased keys) never moves: a group gives its highest
 * other slots instead, and a drained group keeps its pinned ones (the plan then falls short of
 * even shares or of an empty group). Deterministic: groups by id, slots ascending.
 */
export function planBalance(
  view: ClusterView,
  drain: number | null,
  pinned: PinnedSlots = new Map(),
): PlannedMove[] {
  const groups = view.groups.filter((g) => g.id !== 0);
  if (drain !== null && !groups.some((g) => g.id === drain))
    throw new UsageError(`--drain ${drain}: no such kv group`);
  const keep = groups.filter((g) => g.id !== drain).sort((a, b) => a.id - b.id);
  if (keep.length === 0)
    throw new UsageError('there is no other kv group to move slots to; add one first');
  const owned = new Map(keep.map((g) => [g.id, [...g.slots].sort((a, b) => a - b)]));
  // The slots every kept group must take in: the drained group's, and those without an owner.
  const assigned = new Set(groups.flatMap((g) => g.slots));
  const loose: { from: number; slot: number }[] = [
    ...(groups.find((g) => g.id === drain)?.slots ?? [])
      .filter((slot) => !pinned.has(slot))
      .map((slot) => ({ from: drain ?? 0, slot })),
    ...Array.from({ length: view.slotCount }, (_, slot) => slot)
      .filter((slot) => !assigned.has(slot))
      .map((slot) => ({ from: 0, slot })),
  ];
  // Shares: slotCount / n each; the remainder goes to the groups that hold the most already.
  const base = Math.floor(view.slotCount / keep.length);
  const extra = view.slotCount % keep.length;
  const byHolding = [...keep].sort(
    (a, b) => (owned.get(b.id)?.length ?? 0) - (owned.get(a.id)?.length ?? 0) || a.id - b.id,
  );
  const share = new Map(byHolding.map((g, i) => [g.id, base + (i < extra ? 1 : 0)]));
  for (const g of keep) {
    const slots = owned.get(g.id) ?? [];
    const over = slots.length - (share.get(g.id) ?? 0);
    if (over <= 0) continue;
    // The highest slots leave, so that what stays is a range where it was one.
    const movable = slots.filter((slot) => !pinned.has(slot));
    for (const slot of movable.slice(Math.max(0, movable.length - over)))
      loose.push({ from: g.id, slot });
  }
  loose.sort((a, b) => a.slot - b.slot);
  const moves = new Map<string, { from: number; to: number; slots: number[] }>();
  let next = 0;
  for (const g of keep) {
    let need =
      (share.get(g.id) ?? 0) - Math.min(owned.get(g.id)?.length ?? 0, share.get(g.id) ?? 0);
    while (need > 0 && next < loose.length) {
      const { from, slot } = loose[next++];
      const id = `${from}->${g.id}`;
      const move = moves.get(id) ?? { from, to: g.id, slots: [] };
      move.slots.push(slot);
      moves.set(id, move);
      need--;
    }
  }
  return [...moves.values()].sort((a, b) => a.to - b.to || a.from - b.from);
}

/**
 * The slots that hold keys attached to leases, from every kv group's leases and their keys
 * (a lease granted after this look may still stop a move: it then rolls back, naming the keys).
 */
export async function leasedSlots(
  client: Pick<EraftKvClient, 'leases' | 'leaseTimeToLive'>,
  slotCount: number,
  onProgress: (looked: number, leases: number) => void = () => undefined,
): Promise<Map<number, number>> {
  const pinned = new Map<number, number>();
  const leases = await client.leases();
  const parallel = 16;
  for (let i = 0; i < leases.length; i += parallel) {
    const infos = await Promise.all(
      leases.slice(i, i + parallel).map((l) => client.leaseTimeToLive(l.id, { keys: true })),
    );
    for (const info of infos) {
      for (const key of info.keys) {
        const slot = slotOfKey(key, slotCount);
        if (!pinned.has(slot)) pinned.set(slot, info.id);
      }
    }
    onProgress(i + infos.length, leases.length);
  }
  return pinned;
}

/**
 * Says on stderr how far the look at the leases' keys has come, at most twice a second, from
 * half a second on (a few leases take no time and say nothing).
 */
export function leaseLookProgress(
  say: (line: string) => void,
): (looked: number, leases: number) => void {
  const started = Date.now();
  let last = started;
  return (looked, leases) => {
    const now = Date.now();
    if (now - last < 500 && looked < leases) return;
    if (now - started < 500) return;
    last = now;
    say(`looking up the keys of leases: ${looked} of ${leases}\n`);
  };
}

/** The slots of `group` that are pinned, ascending. */
function pinnedOf(group: { readonly slots: readonly number[] }, pinned: PinnedSlots): number[] {
  return group.slots.filter((slot) => pinned.has(slot)).sort((a, b) => a - b);
}

/** The pinned slots of each group, as "slots 3, 70-71 of group 1 hold leased keys…" lines. */
function describePinned(view: ClusterView, pinned: PinnedSlots): string[] {
  const lines: string[] = [];
  for (const g of view.groups) {
    const slots = pinnedOf(g, pinned);
    if (slots.length === 0) continue;
    const leases = [...new Set(slots.map((slot) => pinned.get(slot) as number))];
    const named = leases.slice(0, 3).map(formatLeaseId).join(', ');
    lines.push(
      `slots ${formatSlotRanges(slots)} of group ${g.id} hold leased keys and stay (leases ${named}${leases.length > 3 ? `, and ${leases.length - 3} more` : ''})`,
    );
  }
  return lines;
}

function describe(move: PlannedMove): string {
  const from = move.from === 0 ? 'no owner' : `group ${move.from}`;
  return `move ${formatSlotRanges(move.slots)} (${move.slots.length} slots) from ${from} to group ${move.to}`;
}

export function balanceCommands(yargs: Argv, run: Runner): Argv {
  return yargs.command(
    'balance',
    'Plan slot moves that even out slots per kv group (a dry run unless --apply); slots that hold leased keys stay',
    (y) =>
      y
        .option('apply', {
          type: 'boolean',
          default: false,
          describe: 'carry the plan out (slots move with their keys, one move at a time)',
        })
        .option('drain', {
          type: 'number',
          describe: 'move every slot away from this group (then: group remove <gid>)',
        })
        .option('wait', {
          type: 'string',
          default: '30m',
          describe: 'how long each move may take',
        })
        .example('$0 balance', 'print the plan')
        .example('$0 balance --drain 3 --apply', 'empty group 3 so that it can be removed'),
    run(async (ctx, args) => balance(ctx, args)),
  );
}

async function balance(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const drain = args.drain === undefined ? null : positiveInt(args.drain, '--drain');
  const waitMs = parseDuration(typeof args.wait === 'string' ? args.wait : '30m', '--wait');
  const client = ctx.client();
  const view = await client.cluster();
  const pinned = await leasedSlots(
    client,
    view.slotCount,
    leaseLookProgress((line) => ctx.io.err(line)),
  );
  const plan = planBalance(view, drain, pinned);
  const drained = view.groups.find((g) => g.id === drain);
  const stuck = drained === undefined ? [] : pinnedOf(drained, pinned);
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      json({
        apply: args.apply === true,
        pinned: view.groups
          .map((g) => ({
            group: g.id,
            slots: formatSlotRanges(pinnedOf(g, pinned)),
          }))
          .filter((p) => p.slots !== ''),
        moves: plan.map((m) => ({
          from: m.from,
          to: m.to,
          slots: formatSlotRanges(m.slots),
          slotCount: m.slots.length,
        })),
      }),
    );
  } else {
    if (plan.length === 0)
      ctx.io.out(pinned.size === 0 ? 'balanced: nothing to move\n' : 'nothing to move\n');
    for (const move of plan) ctx.io.out(`${describe(move)}\n`);
    for (const line of describePinned(view, pinned)) ctx.io.out(`${line}\n`);
  }
  // A drain that leased keys hold back is said on stderr; with --apply it also fails (exit 1)
  // once the other moves are done, so that a script does not go on to remove the group.
  const drainBlocked = (): boolean => {
    if (stuck.length === 0) return false;
    ctx.io.err(
      `group ${drain} cannot be emptied: slots ${formatSlotRanges(stuck)} hold keys attached to leases, ` +
        'which cannot move to another group; revoke those leases (eraftkv-ctl lease list), then run balance --drain again\n',
    );
    return true;
  };
  if (args.apply !== true) {
    if (plan.length > 0 && ctx.writeOut !== 'json')
      ctx.io.out('dry run: add --apply to move these slots\n');
    drainBlocked();
    return exitCodes.success;
  }
  for (const move of plan) {
    const result = await moveWithProgress(ctx, move.to, move.slots, waitMs);
    if (ctx.writeOut !== 'json') ctx.io.out(`${describeMoveResult(move.to, result)}\n`);
  }
  return drainBlocked() ? exitCodes.error : exitCodes.success;
}
