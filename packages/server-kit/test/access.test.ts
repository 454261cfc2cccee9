// AccessControl: what a caller may do once auth is enabled, and how refusals are told.
import * as grpc from '@grpc/grpc-js';
import { AccessDeniedError, type PeerCall } from '@eraftkv/raft-server';
import { AccessControl, anonymousCaller, type Caller } from '../src/access';
import { AuthTable, type AuthCommand } from '../src/auth-table';

const b = (s: string): Buffer => Buffer.from(s);

function table(enable: boolean): AuthTable {
  const changes: AuthCommand[] = [
    { kind: 'user-add', user: 'root' },
    { kind: 'user-grant-role', user: 'root', role: 'root' },
    { kind: 'user-add', user: 'app' },
    { kind: 'role-add', role: 'app' },
    {
      kind: 'role-grant-permission',
      role: 'app',
      permission: { key: b('app/'), rangeEnd: b('app0'), type: 'readwrite' },
    },
    { kind: 'user-grant-role', user: 'app', role: 'app' },
    ...(enable ? [{ kind: 'auth-enable' } as const] : []),
  ];
  return changes.reduce((t, c) => {
    const r = t.apply(c);
    if ('refused' in r) throw new Error(r.refused);
    return r.table;
  }, AuthTable.empty());
}

const user = (name: string | null, member: number | null = null): Caller => ({
  user: name,
  memberOf: () => member,
});

/** A call whose caller is `caller` (the access control is given a callerOf that returns it). */
const call = {} as PeerCall;

function denied(fn: () => void): { status: number; message: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof AccessDeniedError) return { status: err.status, message: err.message };
    throw err;
  }
  throw new Error('not denied');
}

describe('AccessControl', () => {
  it('lets every call do everything while auth is disabled', () => {
    const access = new AccessControl(
      () => table(false),
      () => anonymousCaller,
    );
    expect(access.enabled).toBe(false);
    expect(() => access.requireAdmin(call, 'MemberChange')).not.toThrow();
    expect(() =>
      access.requireKeys(anonymousCaller, [
        { kind: 'write', start: b('x'), end: b(''), what: 'kvs[0] (Put)' },
      ]),
    ).not.toThrow();
  });

  it('needs root for administration, or a member of the groups named', () => {
    const as = (c: Caller): AccessControl =>
      new AccessControl(
        () => table(true),
        () => c,
      );
    expect(() => as(user('root')).requireAdmin(call, 'ShardJoin')).not.toThrow();
    expect(denied(() => as(user('app')).requireAdmin(call, 'ShardJoin'))).toEqual({
      status: grpc.status.PERMISSION_DENIED,
      message: 'ShardJoin needs the role root',
    });
    expect(denied(() => as(user(null)).requireAdmin(call, 'ShardJoin')).status).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    expect(denied(() => as(user('ghost')).requireAdmin(call, 'x')).message).toMatch(
      /CN "ghost" is not a user/,
    );
    // A kv group's own server record: its members may; other groups' members may not.
    expect(() => as(user(null, 3)).requireAdmin(call, 'ServerJoin', [3])).not.toThrow();
    expect(() => as(user(null, 2)).requireAdmin(call, 'ServerJoin', [3])).toThrow(
      AccessDeniedError,
    );
    expect(() => as(user(null, 2)).requireAdmin(call, 'listing', 'any')).not.toThrow();
    expect(() => as(user(null, null)).requireAdmin(call, 'listing', 'any')).toThrow(
      AccessDeniedError,
    );
  });

  it('checks every key of a request, all or nothing, naming the first one refused', () => {
    const access = new AccessControl(
      () => table(true),
      () => anonymousCaller,
    );
    const app = user('app');
    expect(() =>
      access.requireKeys(app, [
        { kind: 'write', start: b('app/1'), end: b(''), what: 'kvs[0] (Put)' },
        { kind: 'read', start: b('app/'), end: b('app/z'), what: 'kvs[1] (Scan)' },
      ]),
    ).not.toThrow();
    expect(
      denied(() =>
        access.requireKeys(app, [
          { kind: 'write', start: b('app/1'), end: b(''), what: 'kvs[0] (Put)' },
          { kind: 'write', start: b('other'), end: b(''), what: 'kvs[1] (Put)' },
        ]),
      ).message,
    ).toBe('user "app" may not write key "other" (kvs[1] (Put)); nothing in the request was done');
    expect(
      denied(() =>
        access.requireKeys(app, [
          { kind: 'read', start: b('app/'), end: Buffer.from([0]), what: 'kvs[0] (Scan)' },
        ]),
      ).message,
    ).toMatch(/may not read keys from "app\/" on/);
    expect(
      denied(() =>
        access.requireKeys(app, [
          { kind: 'read', start: Buffer.from([0xff]), end: b(''), what: 'kvs[0] (Get)' },
        ]),
      ).message,
    ).toMatch(/key 0xff/);
    expect(() =>
      access.requireKeys(user('root'), [{ kind: 'write', start: b('any'), end: b(''), what: '' }]),
    ).not.toThrow();
  });
});
