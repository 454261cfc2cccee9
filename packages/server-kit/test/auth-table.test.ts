// AuthTable: etcd's users, roles and key permissions as a pure table.
import { AuthTable, type AuthCommand, type Permission } from '../src/auth-table';

const b = (s: string): Buffer => Buffer.from(s);
const fromOn = Buffer.from([0]);

/** Applies commands in order; throws at the first refusal, naming it. */
function build(...commands: AuthCommand[]): AuthTable {
  let table = AuthTable.empty();
  for (const c of commands) {
    const r = table.apply(c);
    if ('refused' in r) throw new Error(`${c.kind} refused: ${r.refused}`);
    table = r.table;
  }
  return table;
}

function refusal(table: AuthTable, c: AuthCommand): string {
  const r = table.apply(c);
  if (!('refused' in r)) throw new Error(`${c.kind} was taken`);
  return r.refused;
}

const grant = (role: string, permission: Permission): AuthCommand => ({
  kind: 'role-grant-permission',
  role,
  permission,
});

describe('AuthTable', () => {
  const base = (): AuthTable =>
    build(
      { kind: 'user-add', user: 'root' },
      { kind: 'user-grant-role', user: 'root', role: 'root' },
      { kind: 'user-add', user: 'app' },
      { kind: 'role-add', role: 'reader' },
      { kind: 'role-add', role: 'writer' },
      grant('reader', { key: b('app/'), rangeEnd: b('app0'), type: 'read' }),
      grant('writer', { key: b('app/config'), rangeEnd: b(''), type: 'readwrite' }),
      grant('writer', { key: b('logs/'), rangeEnd: fromOn, type: 'write' }),
      { kind: 'user-grant-role', user: 'app', role: 'reader' },
      { kind: 'user-grant-role', user: 'app', role: 'writer' },
      { kind: 'auth-enable' },
    );

  it('lets everyone do everything while auth is off', () => {
    const off = AuthTable.empty();
    expect(off.enabled).toBe(false);
    expect(off.mayAdminister('anyone')).toBe(true);
    expect(off.permits('anyone', 'write', b('x'), b(''))).toBe(true);
  });

  it('enables auth only once a root user holds the root role', () => {
    expect(refusal(AuthTable.empty(), { kind: 'auth-enable' })).toMatch(/user "root"/);
    const t = base();
    expect(t.enabled).toBe(true);
    expect(t.mayAdminister('root')).toBe(true);
    expect(t.mayAdminister('app')).toBe(false);
    expect(refusal(t, { kind: 'user-delete', user: 'root' })).toMatch(/while auth is enabled/);
    expect(refusal(t, { kind: 'user-revoke-role', user: 'root', role: 'root' })).toMatch(
      /keeps "root"/,
    );
    expect(refusal(t, { kind: 'role-delete', role: 'root' })).toMatch(/cannot be deleted/);
  });

  it('checks keys and ranges against the permissions of every role a user holds', () => {
    const t = base();
    // reader: read [app/, app0): the prefix app/.
    expect(t.permits('app', 'read', b('app/x'), b(''))).toBe(true);
    expect(t.permits('app', 'read', b('app/a'), b('app/z'))).toBe(true);
    expect(t.permits('app', 'read', b('app/a'), b('app1'))).toBe(false);
    expect(t.permits('app', 'read', b('app/a'), fromOn)).toBe(false);
    expect(t.permits('app', 'write', b('app/x'), b(''))).toBe(false);
    expect(t.permits('app', 'read', b('other'), b(''))).toBe(false);
    // writer: readwrite app/config alone; write every key from logs/ on.
    expect(t.permits('app', 'write', b('app/config'), b(''))).toBe(true);
    expect(t.permits('app', 'write', b('app/config2'), b(''))).toBe(false);
    expect(t.permits('app', 'write', b('logs/1'), b(''))).toBe(true);
    expect(t.permits('app', 'write', b('zzz'), fromOn)).toBe(true);
    expect(t.permits('app', 'read', b('logs/1'), b(''))).toBe(false);
    // Unknown users may do nothing; root anything.
    expect(t.permits('stranger', 'read', b('app/x'), b(''))).toBe(false);
    expect(t.permits('root', 'write', b('anything'), fromOn)).toBe(true);
  });

  it('revokes roles and permissions, and a deleted role leaves its users', () => {
    let t = base();
    const r1 = t.apply({
      kind: 'role-revoke-permission',
      role: 'writer',
      key: b('logs/'),
      rangeEnd: fromOn,
    });
    if ('refused' in r1) throw new Error(r1.refused);
    t = r1.table;
    expect(t.permits('app', 'write', b('logs/1'), b(''))).toBe(false);
    const r2 = t.apply({ kind: 'role-delete', role: 'reader' });
    if ('refused' in r2) throw new Error(r2.refused);
    t = r2.table;
    expect(t.permits('app', 'read', b('app/x'), b(''))).toBe(false);
    expect(t.listUsers().find((u) => u.user === 'app')?.roles).toEqual(['writer']);
    expect(refusal(t, { kind: 'user-grant-role', user: 'app', role: 'reader' })).toMatch(/no role/);
  });

  it('refuses malformed names and permissions, saying why', () => {
    const t = AuthTable.empty();
    expect(refusal(t, { kind: 'user-add', user: '' })).toMatch(/empty/);
    expect(refusal(t, { kind: 'role-add', role: 'x'.repeat(200) })).toMatch(/longer than/);
    const withRole = build({ kind: 'role-add', role: 'r' });
    expect(refusal(withRole, grant('r', { key: b(''), rangeEnd: b(''), type: 'read' }))).toMatch(
      /needs a key/,
    );
    expect(refusal(withRole, grant('r', { key: b('b'), rangeEnd: b('a'), type: 'read' }))).toMatch(
      /after its key/,
    );
    expect(
      refusal(withRole, grant('root', { key: b('a'), rangeEnd: b(''), type: 'read' })),
    ).toMatch(/already has every permission/);
  });

  it('survives JSON (the meta state and its snapshots) unchanged', () => {
    const t = base();
    const again = AuthTable.fromJson(
      JSON.parse(JSON.stringify(t.toJson())) as ReturnType<AuthTable['toJson']>,
    );
    expect(again.toJson()).toEqual(t.toJson());
    expect(again.permits('app', 'write', b('logs/9'), b(''))).toBe(true);
    expect(again.enabled).toBe(true);
  });
});
