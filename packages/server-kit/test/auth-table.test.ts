// AuthTable: etcd's users, roles and key permissions as a pure table.
import {
  authCommandFromJson,
  authCommandToJson,
  AuthFormatError,
  AuthTable,
  authTableBytesMax,
  type AuthCommand,
  type Permission,
} from '../src/auth-table';

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

  it('counts its changes in a revision, and a refused change leaves it alone', () => {
    const t = base();
    const r = t.apply({ kind: 'user-add', user: 'app' });
    expect('refused' in r).toBe(true);
    const next = t.apply({ kind: 'role-add', role: 'more' });
    if ('refused' in next) throw new Error(next.refused);
    expect(next.table.revision).toBe(t.revision + 1);
    expect(AuthTable.empty().revision).toBe(0);
    expect(t.toJson().revision).toBe(t.revision);
  });

  it('refuses a change that would make the table larger than its bound', () => {
    let t = build({ kind: 'role-add', role: 'big' });
    const key = 'k'.repeat(4000);
    let refused = '';
    for (let i = 0; i < 1000 && refused === ''; i++) {
      const r = t.apply(grant('big', { key: b(`${key}${i}`), rangeEnd: b(''), type: 'read' }));
      if ('refused' in r) refused = r.refused;
      else t = r.table;
    }
    expect(refused).toMatch(new RegExp(`at most ${authTableBytesMax}`));
    expect(Buffer.byteLength(JSON.stringify(t.toJson()))).toBeLessThanOrEqual(authTableBytesMax);
  });

  it('refuses damaged JSON, naming what is wrong', () => {
    const good = base().toJson();
    const bad = (change: Record<string, unknown>): unknown => ({ ...good, ...change });
    expect(() => AuthTable.fromJson(null)).toThrow(AuthFormatError);
    expect(() => AuthTable.fromJson(bad({ revision: -1 }))).toThrow(/revision/);
    expect(() => AuthTable.fromJson(bad({ enabled: 'yes' }))).toThrow(/enabled/);
    expect(() => AuthTable.fromJson(bad({ users: { app: ['ghost'] } }))).toThrow(
      /not a known role/,
    );
    expect(() => AuthTable.fromJson(bad({ users: {} }))).toThrow(/enabled without a user "root"/);
    expect(() =>
      AuthTable.fromJson(bad({ roles: { r: [{ key: '!!', rangeEnd: '', type: 'read' }] } })),
    ).toThrow(/canonical base64/);
    expect(() =>
      AuthTable.fromJson(bad({ roles: { r: [{ key: 'YQ==', rangeEnd: '', type: 'all' }] } })),
    ).toThrow(/read, write or readwrite/);
  });

  it('carries every change through JSON (the meta log) unchanged, and refuses unknown ones', () => {
    const changes: AuthCommand[] = [
      { kind: 'auth-enable' },
      { kind: 'auth-disable' },
      { kind: 'user-add', user: 'u' },
      { kind: 'user-delete', user: 'u' },
      { kind: 'user-grant-role', user: 'u', role: 'r' },
      { kind: 'user-revoke-role', user: 'u', role: 'r' },
      { kind: 'role-add', role: 'r' },
      { kind: 'role-delete', role: 'r' },
      grant('r', { key: b('a'), rangeEnd: Buffer.from([0xff, 0]), type: 'write' }),
      { kind: 'role-revoke-permission', role: 'r', key: b('a'), rangeEnd: fromOn },
    ];
    for (const c of changes) {
      const again = authCommandFromJson(JSON.parse(JSON.stringify(authCommandToJson(c))));
      expect(again).toEqual(c);
    }
    expect(() => authCommandFromJson({ kind: 'user-add' })).toThrow(/"user" is not a string/);
    expect(() => authCommandFromJson({ kind: 'make-me-root' })).toThrow(/unknown kind/);
  });
});
