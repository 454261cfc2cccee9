// auth enable/disable/status, user add/delete/grant-role/revoke-role/list/get and role
// add/delete/grant-permission/revoke-permission/list/get, in etcdctl's names and outputs. A user is
// the CN of a client certificate (eraftkv-ctl --cert); the role root may do anything.
import type { Argv } from 'yargs';
import type { AuthListing, KeyPermission, PermissionKind } from '@eraftkv/client';
import { prefixRangeEnd } from '@eraftkv/protocol';
import { rangeEndOf, textArg, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { json, printable, renderTable } from '../output';

const fromKey = Buffer.from([0]);

/** A permission's keys as etcdctl shows them: [key, end), [key, <open ended>) or the key alone. */
export function describePermission(p: KeyPermission): string {
  if (p.rangeEnd.length === 0) return printable(p.key);
  if (p.rangeEnd.equals(fromKey)) return `[${printable(p.key)}, <open ended>)`;
  const prefix = prefixRangeEnd(p.key).equals(p.rangeEnd) ? ` (prefix ${printable(p.key)})` : '';
  return `[${printable(p.key)}, ${printable(p.rangeEnd)})${prefix}`;
}

const permissionKinds: readonly PermissionKind[] = ['read', 'write', 'readwrite'];

function nameArg(args: Record<string, unknown>, field: string, what: string): string {
  const name = textArg(args[field], what);
  if (name === '') throw new UsageError(`${what} is empty`);
  return name;
}

function say(ctx: Context, text: string, value: Record<string, unknown>): number {
  if (ctx.writeOut === 'json') ctx.io.out(json(value));
  else ctx.io.out(`${text}\n`);
  return exitCodes.success;
}

function permissionJson(p: KeyPermission): Record<string, string> {
  return {
    type: p.type,
    key: printable(p.key),
    rangeEnd: printable(p.rangeEnd),
    keys: describePermission(p),
  };
}

function printRole(ctx: Context, role: AuthListing['roles'][number]): void {
  if (ctx.writeOut === 'json') {
    ctx.io.out(json({ role: role.name, permissions: role.permissions.map(permissionJson) }));
    return;
  }
  const read = role.permissions.filter((p) => p.type !== 'write');
  const write = role.permissions.filter((p) => p.type !== 'read');
  const lines = [`Role ${role.name}`];
  if (role.name === 'root') lines.push('Every key, the topology, membership and auth');
  lines.push('KV Read:', ...read.map((p) => `\t${describePermission(p)}`));
  lines.push('KV Write:', ...write.map((p) => `\t${describePermission(p)}`));
  ctx.io.out(`${lines.join('\n')}\n`);
}

export function authCommands(yargs: Argv, run: Runner): Argv {
  return yargs
    .command(
      'auth',
      'Enable, disable or show auth (users from client certificate CNs, roles with key permissions)',
      (y) =>
        y
          .command(
            'enable',
            'Enable auth: needs a user "root" with the role root, and this command run with root\'s client certificate (--cert)',
            (yy) => yy.example('$0 --cacert ca.crt --cert root.crt --key root.key auth enable', ''),
            run(async (ctx) => {
              const s = await ctx.client().auth.enable();
              return say(ctx, 'Authentication Enabled', {
                enabled: s.enabled,
                revision: s.revision,
              });
            }),
          )
          .command(
            'disable',
            'Disable auth: every client may then do everything again',
            (yy) => yy,
            run(async (ctx) => {
              const s = await ctx.client().auth.disable();
              return say(ctx, 'Authentication Disabled', {
                enabled: s.enabled,
                revision: s.revision,
              });
            }),
          )
          .command(
            'status',
            'Whether auth is enabled, its revision, and who this client is taken for',
            (yy) => yy,
            run(async (ctx) => {
              const s = await ctx.client().auth.status();
              return say(
                ctx,
                `Authentication Status: ${s.enabled}\nAuthRevision: ${s.revision}\nCaller: ${s.caller === '' ? '(no user: no client certificate)' : s.caller}`,
                { enabled: s.enabled, revision: s.revision, caller: s.caller },
              );
            }),
          )
          .demandCommand(1, 'auth needs a subcommand: enable, disable or status'),
      () => {},
    )
    .command(
      'user',
      'Users (the CN of a client certificate) and their roles',
      (y) =>
        y
          .command(
            'add <name>',
            'Add a user (its client certificate has CN <name>)',
            (yy) => yy.positional('name', { type: 'string' }).example('$0 user add alice', ''),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              await ctx.client().auth.addUser(name);
              return say(ctx, `User ${name} created`, { user: name, created: true });
            }),
          )
          .command(
            'delete <name>',
            'Delete a user',
            (yy) => yy.positional('name', { type: 'string' }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              await ctx.client().auth.deleteUser(name);
              return say(ctx, `User ${name} deleted`, { user: name, deleted: true });
            }),
          )
          .command(
            'grant-role <name> <role>',
            'Give a user a role',
            (yy) =>
              yy
                .positional('name', { type: 'string' })
                .positional('role', { type: 'string' })
                .example('$0 user grant-role alice readers', ''),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              const role = nameArg(args, 'role', '<role>');
              await ctx.client().auth.grantRole(name, role);
              return say(ctx, `Role ${role} is granted to user ${name}`, { user: name, role });
            }),
          )
          .command(
            'revoke-role <name> <role>',
            'Take a role from a user',
            (yy) =>
              yy.positional('name', { type: 'string' }).positional('role', { type: 'string' }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              const role = nameArg(args, 'role', '<role>');
              await ctx.client().auth.revokeRole(name, role);
              return say(ctx, `Role ${role} is revoked from user ${name}`, { user: name, role });
            }),
          )
          .command(
            'list',
            'List the users and their roles',
            (yy) => yy,
            run(async (ctx) => {
              const { users } = await ctx.client().auth.list();
              if (ctx.writeOut === 'json') ctx.io.out(json({ users }));
              else if (ctx.writeOut === 'table')
                ctx.io.out(
                  renderTable(
                    ['USER', 'ROLES'],
                    users.map((u) => [u.name, u.roles.join(',')]),
                  ),
                );
              else for (const u of users) ctx.io.out(`${u.name}\n`);
              return exitCodes.success;
            }),
          )
          .command(
            'get <name>',
            'Show a user and its roles',
            (yy) => yy.positional('name', { type: 'string' }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              const user = (await ctx.client().auth.list()).users.find((u) => u.name === name);
              if (user === undefined) {
                ctx.io.err(`Error: no user "${name}"\n`);
                return exitCodes.error;
              }
              return say(ctx, `User: ${user.name}\nRoles: ${user.roles.join(' ')}`, user);
            }),
          )
          .demandCommand(
            1,
            'user needs a subcommand: add, delete, grant-role, revoke-role, list or get',
          ),
      () => {},
    )
    .command(
      'role',
      'Roles and the keys they may read or write',
      (y) =>
        y
          .command(
            'add <name>',
            'Add a role (without permissions)',
            (yy) => yy.positional('name', { type: 'string' }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              await ctx.client().auth.addRole(name);
              return say(ctx, `Role ${name} created`, { role: name, created: true });
            }),
          )
          .command(
            'delete <name>',
            'Delete a role (users holding it lose it)',
            (yy) => yy.positional('name', { type: 'string' }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              await ctx.client().auth.deleteRole(name);
              return say(ctx, `Role ${name} deleted`, { role: name, deleted: true });
            }),
          )
          .command(
            'grant-permission <name> <type> <key> [end]',
            'Let a role read, write or readwrite a key, the range [key, end), every key with a prefix (--prefix) or from a key on (--from-key)',
            (yy) =>
              yy
                .positional('name', { type: 'string' })
                .positional('type', { type: 'string', choices: permissionKinds })
                .positional('key', { type: 'string' })
                .positional('end', { type: 'string' })
                .option('prefix', {
                  type: 'boolean',
                  default: false,
                  describe: 'every key that starts with <key>',
                })
                .option('from-key', {
                  type: 'boolean',
                  default: false,
                  describe: 'every key from <key> on',
                })
                .example('$0 role grant-permission readers read app/ --prefix', ''),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              const type = textArg(args.type, '<type>') as PermissionKind;
              const key = Buffer.from(textArg(args.key, '<key>'), 'utf8');
              const rangeEnd = rangeEndOf(key, args);
              await ctx.client().auth.grantPermission(name, { type, key, rangeEnd });
              return say(ctx, `Role ${name} updated`, {
                role: name,
                granted: permissionJson({ type, key, rangeEnd }),
              });
            }),
          )
          .command(
            'revoke-permission <name> <key> [end]',
            'Take a permission from a role (the same key and end it was granted with)',
            (yy) =>
              yy
                .positional('name', { type: 'string' })
                .positional('key', { type: 'string' })
                .positional('end', { type: 'string' })
                .option('prefix', { type: 'boolean', default: false })
                .option('from-key', { type: 'boolean', default: false }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              const key = Buffer.from(textArg(args.key, '<key>'), 'utf8');
              const rangeEnd = rangeEndOf(key, args);
              await ctx.client().auth.revokePermission(name, key, rangeEnd);
              return say(
                ctx,
                `Permission of range ${describePermission({ type: 'read', key, rangeEnd })} is revoked from role ${name}`,
                {
                  role: name,
                  revoked: { key: printable(key), rangeEnd: printable(rangeEnd) },
                },
              );
            }),
          )
          .command(
            'list',
            'List the roles',
            (yy) => yy,
            run(async (ctx) => {
              const { roles } = await ctx.client().auth.list();
              if (ctx.writeOut === 'json')
                ctx.io.out(
                  json({
                    roles: roles.map((r) => ({
                      role: r.name,
                      permissions: r.permissions.map(permissionJson),
                    })),
                  }),
                );
              else if (ctx.writeOut === 'table')
                ctx.io.out(
                  renderTable(
                    ['ROLE', 'TYPE', 'KEYS'],
                    roles.flatMap((r) =>
                      r.permissions.length === 0
                        ? [[r.name, '', '']]
                        : r.permissions.map((p) => [r.name, p.type, describePermission(p)]),
                    ),
                  ),
                );
              else for (const r of roles) ctx.io.out(`${r.name}\n`);
              return exitCodes.success;
            }),
          )
          .command(
            'get <name>',
            'Show a role and its permissions',
            (yy) => yy.positional('name', { type: 'string' }),
            run(async (ctx, args) => {
              const name = nameArg(args, 'name', '<name>');
              const role = (await ctx.client().auth.list()).roles.find((r) => r.name === name);
              if (role === undefined) {
                ctx.io.err(`Error: no role "${name}"\n`);
                return exitCodes.error;
              }
              printRole(ctx, role);
              return exitCodes.success;
            }),
          )
          .demandCommand(
            1,
            'role needs a subcommand: add, delete, grant-permission, revoke-permission, list or get',
          ),
      () => {},
    );
}
