// Users, roles and key permissions, in etcd's model: a user (the CN of a client certificate) has
// roles; a role grants read, write or readwrite on keys: one key, a range [key, rangeEnd), or
// every key from `key` on (rangeEnd "\0"); the role `root` may do anything, and auth can be
// enabled only once a user `root` holds it (so that enabling never locks everyone out).
//
// The table is pure and deterministic: the meta group applies its commands in log order on every
// replica and keeps it in its state; kv nodes hold a copy to check each request at its entry.
// Nothing here reads a clock or a random source.

/** What a permission allows. */
export type PermissionType = 'read' | 'write' | 'readwrite';

/** Keys a permission covers: `key` alone, [key, rangeEnd), or every key >= key (rangeEnd \0). */
export interface Permission {
  readonly key: Buffer;
  /** Empty: `key` alone; a single 0 byte: every key from `key` on. */
  readonly rangeEnd: Buffer;
  readonly type: PermissionType;
}

/** A change of the table (one meta log command each). */
export type AuthCommand =
  | { readonly kind: 'auth-enable' }
  | { readonly kind: 'auth-disable' }
  | { readonly kind: 'user-add'; readonly user: string }
  | { readonly kind: 'user-delete'; readonly user: string }
  | { readonly kind: 'user-grant-role'; readonly user: string; readonly role: string }
  | { readonly kind: 'user-revoke-role'; readonly user: string; readonly role: string }
  | { readonly kind: 'role-add'; readonly role: string }
  | { readonly kind: 'role-delete'; readonly role: string }
  | {
      readonly kind: 'role-grant-permission';
      readonly role: string;
      readonly permission: Permission;
    }
  | {
      readonly kind: 'role-revoke-permission';
      readonly role: string;
      readonly key: Buffer;
      readonly rangeEnd: Buffer;
    };

/** The role that may do anything (topology, membership, auth, every key). */
export const rootRole = 'root';
/** The user that must hold `root` before auth can be enabled. */
export const rootUser = 'root';

/** The longest user or role name, and how many permissions one role may hold. */
export const authNameBytesMax = 128;
export const permissionsPerRoleMax = 1024;
/** The longest key or range end of a permission (the default --key-bytes-max). */
export const permissionKeyBytesMax = 4096;
/**
 * The most bytes the whole table may take as JSON: it travels in the meta group's answers and in
 * every kv group's log, so a change that would make it larger is refused.
 */
export const authTableBytesMax = 512 * 1024;

/** A permission as JSON: keys base64. */
export interface PermissionJson {
  readonly key: string;
  readonly rangeEnd: string;
  readonly type: PermissionType;
}

/** The table as JSON (in the meta group's state and snapshots, and in kv groups' logs), keys base64. */
export interface AuthTableJson {
  /** Grows by one with every change the table accepts; 0 for the empty table. */
  readonly revision: number;
  readonly enabled: boolean;
  readonly users: Record<string, string[]>;
  readonly roles: Record<string, PermissionJson[]>;
}

/** An AuthCommand as JSON (in the meta group's log): Buffers as base64. */
export type AuthCommandJson =
  | Exclude<AuthCommand, { kind: 'role-grant-permission' } | { kind: 'role-revoke-permission' }>
  | {
      readonly kind: 'role-grant-permission';
      readonly role: string;
      readonly permission: PermissionJson;
    }
  | {
      readonly kind: 'role-revoke-permission';
      readonly role: string;
      readonly key: string;
      readonly rangeEnd: string;
    };

/** Stored or received auth data that does not have the expected shape. */
export class AuthFormatError extends Error {
  override name = 'AuthFormatError';
}

/** Does [key, rangeEnd) of `p` contain every key of [start, end) (end empty: `start` alone)? */
function covers(p: Permission, start: Buffer, end: Buffer): boolean {
  if (p.rangeEnd.length === 0) return end.length === 0 && p.key.equals(start);
  if (Buffer.compare(start, p.key) < 0) return false;
  const fromOn = p.rangeEnd.length === 1 && p.rangeEnd[0] === 0;
  if (fromOn) return true;
  // A single key [start] lies inside when start < rangeEnd; a range when its end <= rangeEnd
  // (an end of \0 means "to the end of the key space", never inside a bounded range).
  if (end.length === 0) return Buffer.compare(start, p.rangeEnd) < 0;
  if (end.length === 1 && end[0] === 0) return false;
  return Buffer.compare(end, p.rangeEnd) <= 0;
}

function allows(p: Permission, kind: 'read' | 'write'): boolean {
  return p.type === 'readwrite' || p.type === kind;
}

function checkName(what: string, name: string): string | null {
  if (name === '') return `the ${what} name is empty`;
  if (Buffer.byteLength(name) > authNameBytesMax)
    return `the ${what} name is longer than ${authNameBytesMax} bytes`;
  return null;
}

export class AuthTable {
  private constructor(
    readonly enabled: boolean,
    private readonly users: ReadonlyMap<string, ReadonlySet<string>>,
    private readonly roles: ReadonlyMap<string, readonly Permission[]>,
    readonly revision: number,
  ) {}

  static empty(): AuthTable {
    return new AuthTable(false, new Map(), new Map([[rootRole, []]]), 0);
  }

  /** Applies a command: the new table, or why it is refused (the table then stays as it was). */
  apply(c: AuthCommand): { table: AuthTable } | { refused: string } {
    const outcome = this.change(c);
    if ('refused' in outcome) return outcome;
    const bytes = Buffer.byteLength(JSON.stringify(outcome.table.toJson()));
    if (bytes > authTableBytesMax) {
      return {
        refused: `the auth table would take ${bytes} bytes; it may take at most ${authTableBytesMax} (remove users, roles or permissions first)`,
      };
    }
    return outcome;
  }

  private change(c: AuthCommand): { table: AuthTable } | { refused: string } {
    const users = new Map(this.users);
    const roles = new Map(this.roles);
    const next = this.revision + 1;
    const refused = (why: string): { refused: string } => ({ refused: why });
    switch (c.kind) {
      case 'auth-enable': {
        if (!(this.users.get(rootUser)?.has(rootRole) ?? false))
          return refused(`auth needs a user "${rootUser}" with the role "${rootRole}" first`);
        return { table: new AuthTable(true, users, roles, next) };
      }
      case 'auth-disable':
        return { table: new AuthTable(false, users, roles, next) };
      case 'user-add': {
        const bad = checkName('user', c.user);
        if (bad !== null) return refused(bad);
        if (users.has(c.user)) return refused(`user "${c.user}" exists`);
        users.set(c.user, new Set());
        break;
      }
      case 'user-delete':
        if (!users.has(c.user)) return refused(`no user "${c.user}"`);
        if (this.enabled && c.user === rootUser)
          return refused(`user "${rootUser}" cannot be deleted while auth is enabled`);
        users.delete(c.user);
        break;
      case 'user-grant-role': {
        const held = users.get(c.user);
        if (held === undefined) return refused(`no user "${c.user}"`);
        if (!roles.has(c.role)) return refused(`no role "${c.role}"`);
        users.set(c.user, new Set([...held, c.role]));
        break;
      }
      case 'user-revoke-role': {
        const held = users.get(c.user);
        if (held === undefined) return refused(`no user "${c.user}"`);
        if (!held.has(c.role)) return refused(`user "${c.user}" does not have role "${c.role}"`);
        if (this.enabled && c.user === rootUser && c.role === rootRole)
          return refused(`"${rootUser}" keeps "${rootRole}" while auth is enabled`);
        users.set(c.user, new Set([...held].filter((r) => r !== c.role)));
        break;
      }
      case 'role-add': {
        const bad = checkName('role', c.role);
        if (bad !== null) return refused(bad);
        if (roles.has(c.role)) return refused(`role "${c.role}" exists`);
        roles.set(c.role, []);
        break;
      }
      case 'role-delete':
        if (!roles.has(c.role)) return refused(`no role "${c.role}"`);
        if (c.role === rootRole) return refused(`role "${rootRole}" cannot be deleted`);
        roles.delete(c.role);
        for (const [user, held] of users) {
          if (held.has(c.role)) users.set(user, new Set([...held].filter((r) => r !== c.role)));
        }
        break;
      case 'role-grant-permission': {
        const held = roles.get(c.role);
        if (held === undefined) return refused(`no role "${c.role}"`);
        if (c.role === rootRole) return refused(`role "${rootRole}" already has every permission`);
        const p = c.permission;
        if (p.key.length === 0) return refused('a permission needs a key');
        if (p.key.length > permissionKeyBytesMax || p.rangeEnd.length > permissionKeyBytesMax)
          return refused(
            `a permission's key and range end are at most ${permissionKeyBytesMax} bytes`,
          );
        const bounded = p.rangeEnd.length > 0 && !(p.rangeEnd.length === 1 && p.rangeEnd[0] === 0);
        if (bounded && Buffer.compare(p.rangeEnd, p.key) <= 0)
          return refused('the range end of a permission must come after its key');
        // Granting the same keys again replaces their type (etcd's behaviour).
        const others = held.filter((q) => !(q.key.equals(p.key) && q.rangeEnd.equals(p.rangeEnd)));
        if (others.length >= permissionsPerRoleMax)
          return refused(`a role holds at most ${permissionsPerRoleMax} permissions`);
        roles.set(c.role, [...others, p]);
        break;
      }
      case 'role-revoke-permission': {
        const held = roles.get(c.role);
        if (held === undefined) return refused(`no role "${c.role}"`);
        const kept = held.filter((q) => !(q.key.equals(c.key) && q.rangeEnd.equals(c.rangeEnd)));
        if (kept.length === held.length) return refused(`role "${c.role}" has no such permission`);
        roles.set(c.role, kept);
        break;
      }
    }
    return { table: new AuthTable(this.enabled, users, roles, next) };
  }

  /** Whether `user` holds the role root (whether or not auth is enabled). */
  holdsRoot(user: string): boolean {
    return this.users.get(user)?.has(rootRole) ?? false;
  }

  /** Whether `user` exists. */
  hasUser(user: string): boolean {
    return this.users.has(user);
  }

  /** Whether `user` may change topology, membership, leadership and auth: the root role (with auth off, everyone). */
  mayAdminister(user: string): boolean {
    return !this.enabled || (this.users.get(user)?.has(rootRole) ?? false);
  }

  /**
   * Whether `user` may `kind` the keys [start, end) (end empty: `start` alone; end \0: every key
   * from `start` on): some permission of one of its roles covers them all.
   */
  permits(user: string, kind: 'read' | 'write', start: Buffer, end: Buffer): boolean {
    if (this.mayAdminister(user)) return true;
    for (const role of this.users.get(user) ?? []) {
      for (const p of this.roles.get(role) ?? []) {
        if (allows(p, kind) && covers(p, start, end)) return true;
      }
    }
    return false;
  }

  /** Users and their roles, sorted (for listing). */
  listUsers(): { user: string; roles: string[] }[] {
    return [...this.users]
      .map(([user, roles]) => ({ user, roles: [...roles].sort() }))
      .sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  }

  /** Roles and their permissions, sorted (for listing). */
  listRoles(): { role: string; permissions: readonly Permission[] }[] {
    return [...this.roles]
      .map(([role, permissions]) => ({ role, permissions }))
      .sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0));
  }

  toJson(): AuthTableJson {
    const users: Record<string, string[]> = {};
    for (const { user, roles } of this.listUsers()) users[user] = roles;
    const roles: Record<string, PermissionJson[]> = {};
    for (const { role, permissions } of this.listRoles())
      roles[role] = permissions.map(permissionToJson);
    return { revision: this.revision, enabled: this.enabled, users, roles };
  }

  /**
   * The table from its JSON (read from disk, a log entry or the wire): every field is checked, and
   * a table that breaks a rule of the model (root missing while enabled, an unknown role held) is
   * refused, since applying it would let replicas decide on damaged data.
   */
  static fromJson(value: unknown): AuthTable {
    const o = objectOf(value, 'the auth table');
    const revision = o.revision;
    if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0)
      throw new AuthFormatError('the auth table\'s "revision" is not a non-negative integer');
    if (typeof o.enabled !== 'boolean')
      throw new AuthFormatError('the auth table\'s "enabled" is not a boolean');
    const roles = new Map<string, Permission[]>();
    for (const [role, ps] of Object.entries(objectOf(o.roles, 'the auth table\'s "roles"'))) {
      nameOf('role', role);
      if (!Array.isArray(ps) || ps.length > permissionsPerRoleMax)
        throw new AuthFormatError(`role "${role}" does not hold a list of permissions`);
      roles.set(
        role,
        ps.map((p) => permissionFromJson(p, `a permission of role "${role}"`)),
      );
    }
    if (!roles.has(rootRole)) roles.set(rootRole, []);
    const users = new Map<string, Set<string>>();
    for (const [user, held] of Object.entries(objectOf(o.users, 'the auth table\'s "users"'))) {
      nameOf('user', user);
      if (!Array.isArray(held) || !held.every((r) => typeof r === 'string' && roles.has(r)))
        throw new AuthFormatError(`user "${user}" holds something that is not a known role`);
      users.set(user, new Set(held as string[]));
    }
    if (o.enabled && !(users.get(rootUser)?.has(rootRole) ?? false))
      throw new AuthFormatError(
        `the auth table is enabled without a user "${rootUser}" holding "${rootRole}"`,
      );
    return new AuthTable(o.enabled, users, roles, revision);
  }
}

type JsonObject = Record<string, unknown>;

function objectOf(value: unknown, what: string): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new AuthFormatError(`${what} is not an object`);
  return value as JsonObject;
}

function stringOf(o: JsonObject, field: string, what: string): string {
  const v = o[field];
  if (typeof v !== 'string') throw new AuthFormatError(`${what}: "${field}" is not a string`);
  return v;
}

function nameOf(what: string, name: string): string {
  const bad = checkName(what, name);
  if (bad !== null) throw new AuthFormatError(bad);
  return name;
}

function base64Of(o: JsonObject, field: string, what: string): Buffer {
  const text = stringOf(o, field, what);
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text)
    throw new AuthFormatError(`${what}: "${field}" is not canonical base64`);
  if (bytes.length > permissionKeyBytesMax)
    throw new AuthFormatError(`${what}: "${field}" is longer than ${permissionKeyBytesMax} bytes`);
  return bytes;
}

const permissionTypes: readonly PermissionType[] = ['read', 'write', 'readwrite'];

function permissionToJson(p: Permission): PermissionJson {
  return { key: p.key.toString('base64'), rangeEnd: p.rangeEnd.toString('base64'), type: p.type };
}

function permissionFromJson(value: unknown, what: string): Permission {
  const o = objectOf(value, what);
  const type = o.type;
  if (typeof type !== 'string' || !permissionTypes.includes(type as PermissionType))
    throw new AuthFormatError(`${what}: "type" is not read, write or readwrite`);
  return {
    key: base64Of(o, 'key', what),
    rangeEnd: base64Of(o, 'rangeEnd', what),
    type: type as PermissionType,
  };
}

/** An AuthCommand as JSON, for the meta group's log. */
export function authCommandToJson(c: AuthCommand): AuthCommandJson {
  switch (c.kind) {
    case 'role-grant-permission':
      return { kind: c.kind, role: c.role, permission: permissionToJson(c.permission) };
    case 'role-revoke-permission':
      return {
        kind: c.kind,
        role: c.role,
        key: c.key.toString('base64'),
        rangeEnd: c.rangeEnd.toString('base64'),
      };
    default:
      return c;
  }
}

/** An AuthCommand from its JSON; throws AuthFormatError naming the field at fault. */
export function authCommandFromJson(value: unknown): AuthCommand {
  const what = 'the auth change';
  const o = objectOf(value, what);
  const kind = stringOf(o, 'kind', what);
  switch (kind) {
    case 'auth-enable':
    case 'auth-disable':
      return { kind };
    case 'user-add':
    case 'user-delete':
      return { kind, user: stringOf(o, 'user', what) };
    case 'user-grant-role':
    case 'user-revoke-role':
      return { kind, user: stringOf(o, 'user', what), role: stringOf(o, 'role', what) };
    case 'role-add':
    case 'role-delete':
      return { kind, role: stringOf(o, 'role', what) };
    case 'role-grant-permission':
      return {
        kind,
        role: stringOf(o, 'role', what),
        permission: permissionFromJson(o.permission, `${what}'s permission`),
      };
    case 'role-revoke-permission':
      return {
        kind,
        role: stringOf(o, 'role', what),
        key: base64Of(o, 'key', what),
        rangeEnd: base64Of(o, 'rangeEnd', what),
      };
    default:
      throw new AuthFormatError(`${what} has the unknown kind "${kind}"`);
  }
}
