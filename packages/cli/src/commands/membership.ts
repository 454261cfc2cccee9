// member list/add/remove/promote and leader transfer, for the meta group (--group 0, the
// default) or any kv group.
import type { Argv } from 'yargs';
import type { MemberView } from '@eraftkv/client';
import { positiveInt, textArg, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { json, renderTable } from '../output';

function groupOf(args: Record<string, unknown>): number {
  const g = Number(args.group ?? 0);
  if (!Number.isSafeInteger(g) || g < 0)
    throw new UsageError(`--group must be 0 (meta) or a kv group id, got ${String(args.group)}`);
  return g;
}

function printMembers(
  ctx: Context,
  group: number,
  members: readonly MemberView[],
  leaderId: number,
): void {
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      json({ group, leaderId, members: members.map((m) => ({ ...m, leader: m.id === leaderId })) }),
    );
    return;
  }
  const rows = members.map((m) => [
    String(m.id),
    m.address,
    m.learner ? 'learner' : 'voter',
    m.id === leaderId ? 'yes' : 'no',
    String(m.incarnation),
  ]);
  if (ctx.writeOut === 'table')
    ctx.io.out(renderTable(['ID', 'ADDRESS', 'ROLE', 'LEADER', 'INCARNATION'], rows));
  else
    for (const r of rows)
      ctx.io.out(`${r[0]}, ${r[1]}, ${r[2]}${r[3] === 'yes' ? ', leader' : ''}\n`);
}

const groupOption = {
  type: 'number',
  default: 0,
  describe: 'the group: 0 is the meta group, 1.. are kv groups',
} as const;

export function membershipCommands(yargs: Argv, run: Runner): Argv {
  return yargs
    .command(
      'member',
      'Manage the members of a group: list, add, remove, promote',
      (y) =>
        y
          .command(
            'list',
            'List the members of a group and who leads it',
            (yy) =>
              yy.option('group', groupOption).example('$0 member list --group 1 -w table', ''),
            run(async (ctx, args) => {
              const group = groupOf(args);
              const { leaderId, members } = await ctx.client().members(group);
              printMembers(ctx, group, members, leaderId);
              return exitCodes.success;
            }),
          )
          .command(
            'add <id> <address>',
            'Add a node to a group (start it first with an empty --peers); as a learner it is promoted once caught up',
            (yy) =>
              yy
                .option('group', groupOption)
                .positional('id', { type: 'number', describe: 'the new node id' })
                .positional('address', { type: 'string', describe: 'its host:port' })
                .option('learner', {
                  type: 'boolean',
                  default: false,
                  describe: 'add as a non-voting learner (promoted automatically)',
                })
                .example('$0 member add --group 1 4 127.0.0.1:7091 --learner', ''),
            run(async (ctx, args) => {
              const group = groupOf(args);
              const address = textArg(args.address, '<address>');
              if (!/^[^\s:]+:\d{1,5}$/.test(address))
                throw new UsageError(`"${address}" is not host:port`);
              const members = await ctx
                .client()
                .addMember(group, positiveInt(args.id, '<id>'), address, args.learner === true);
              printMembers(ctx, group, members, 0);
              return exitCodes.success;
            }),
          )
          .command(
            'remove <id>',
            'Remove a node from a group (the leader too: it hands over once the removal commits)',
            (yy) =>
              yy
                .option('group', groupOption)
                .positional('id', { type: 'number' })
                .example('$0 member remove --group 1 4', ''),
            run(async (ctx, args) => {
              const group = groupOf(args);
              printMembers(
                ctx,
                group,
                await ctx.client().removeMember(group, positiveInt(args.id, '<id>')),
                0,
              );
              return exitCodes.success;
            }),
          )
          .command(
            'promote <id>',
            'Promote a learner to voter',
            (yy) =>
              yy
                .option('group', groupOption)
                .positional('id', { type: 'number' })
                .example('$0 member promote --group 1 4', ''),
            run(async (ctx, args) => {
              const group = groupOf(args);
              printMembers(
                ctx,
                group,
                await ctx.client().promoteMember(group, positiveInt(args.id, '<id>')),
                0,
              );
              return exitCodes.success;
            }),
          )
          .demandCommand(1, 'member needs a subcommand: list, add, remove or promote'),
      () => {},
    )
    .command(
      'leader',
      'Leadership: transfer',
      (y) =>
        y
          .command(
            'transfer <id>',
            'Hand the leadership of a group to a caught-up voter',
            (yy) =>
              yy
                .option('group', groupOption)
                .positional('id', { type: 'number' })
                .example('$0 leader transfer --group 1 2', ''),
            run(async (ctx, args) => {
              const group = groupOf(args);
              const id = positiveInt(args.id, '<id>');
              await ctx.client().transferLeader(group, id);
              if (ctx.writeOut === 'json') ctx.io.out(json({ group, leaderId: id }));
              else ctx.io.out(`leadership of group ${group} transferred to node ${id}\n`);
              return exitCodes.success;
            }),
          )
          .demandCommand(1, 'leader needs a subcommand: transfer'),
      () => {},
    );
}
