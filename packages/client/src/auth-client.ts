// AuthClient: the cluster's users, roles and key permissions (docs/security.md), kept by the meta
// group. A user is the CN of a client certificate; the role root may do anything; other roles
// grant read, write or readwrite on a key, a range or every key from a key on. Changes carry the
// client's id and a command id, so a retried change applies once.
import {
  AuthAction,
  AuthReq,
  permissionName,
  permissionType,
  type AuthResp,
  type PermissionName,
  type Permission as WirePermission,
} from '@eraftkv/protocol';
import {
  metaVerdict,
  type CallOptions,
  type ClientSession,
  type ReadOptions,
} from './client-session';

export type PermissionKind = PermissionName;

/** Keys a permission covers: `key` alone (rangeEnd empty), [key, rangeEnd), or every key from `key` on (rangeEnd a single 0 byte). */
export interface KeyPermission {
  readonly type: PermissionKind;
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
}

export interface AuthStatus {
  readonly enabled: boolean;
  /** Grows with every change of users, roles or permissions. */
  readonly revision: number;
  /** Who the meta server took this client for (its certificate's CN; '' for nobody). */
  readonly caller: string;
}

export interface AuthListing extends AuthStatus {
  readonly users: { name: string; roles: string[] }[];
  readonly roles: { name: string; permissions: KeyPermission[] }[];
}

function statusOf(resp: AuthResp): AuthStatus {
  return { enabled: resp.enabled, revision: resp.revision, caller: resp.caller };
}

function wirePermission(type: PermissionKind, key: Buffer, rangeEnd: Buffer): WirePermission {
  return { permType: permissionType(type), key, rangeEnd };
}

export class AuthClient {
  constructor(private readonly session: ClientSession) {}

  /** Whether auth is enabled, and the table's revision. */
  async status(options: ReadOptions = {}): Promise<AuthStatus> {
    return statusOf(
      await this.call(
        { action: AuthAction.AuthStatus, serializable: options.serializable },
        options,
      ),
    );
  }

  /** Every user and role (root only, once auth is enabled). */
  async list(options: ReadOptions = {}): Promise<AuthListing> {
    const resp = await this.call(
      { action: AuthAction.AuthList, serializable: options.serializable },
      options,
    );
    return {
      ...statusOf(resp),
      users: resp.users.map((u) => ({ name: u.name, roles: [...u.roles] })),
      roles: resp.roles.map((r) => ({
        name: r.name,
        permissions: r.permissions.map((p) => ({
          // The meta group sends only the types it stores.
          type: permissionName(p.permType) ?? 'read',
          key: Buffer.from(p.key),
          rangeEnd: Buffer.from(p.rangeEnd),
        })),
      })),
    };
  }

  /** Enables auth: needs a user "root" holding the role root, and this client must be root. */
  enable(options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.AuthEnable }, options);
  }

  disable(options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.AuthDisable }, options);
  }

  addUser(user: string, options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.UserAdd, user }, options);
  }

  deleteUser(user: string, options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.UserDelete, user }, options);
  }

  grantRole(user: string, role: string, options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.UserGrantRole, user, role }, options);
  }

  revokeRole(user: string, role: string, options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.UserRevokeRole, user, role }, options);
  }

  addRole(role: string, options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.RoleAdd, role }, options);
  }

  deleteRole(role: string, options: CallOptions = {}): Promise<AuthStatus> {
    return this.change({ action: AuthAction.RoleDelete, role }, options);
  }

  /** Grants `role` a permission (granting the same keys again replaces the type). */
  grantPermission(
    role: string,
    permission: KeyPermission,
    options: CallOptions = {},
  ): Promise<AuthStatus> {
    return this.change(
      {
        action: AuthAction.RoleGrantPermission,
        role,
        permission: wirePermission(permission.type, permission.key, permission.rangeEnd),
      },
      options,
    );
  }

  revokePermission(
    role: string,
    key: Buffer,
    rangeEnd: Buffer,
    options: CallOptions = {},
  ): Promise<AuthStatus> {
    return this.change(
      {
        action: AuthAction.RoleRevokePermission,
        role,
        permission: wirePermission('read', key, rangeEnd),
      },
      options,
    );
  }

  private async change(fields: Partial<AuthReq>, options: CallOptions): Promise<AuthStatus> {
    return statusOf(
      await this.call(
        { ...fields, clientId: this.session.clientId, commandId: this.session.nextCommandId() },
        options,
        true,
      ),
    );
  }

  private call(fields: Partial<AuthReq>, options: CallOptions, write = false): Promise<AuthResp> {
    const request = AuthReq.fromPartial(fields);
    return this.session.caller.call({
      groupId: 0,
      servers: () => this.session.endpoints,
      send: (address, timeoutMs) =>
        this.session.connections.unary(address, (c) => c.auth.bind(c), request, timeoutMs),
      judge: metaVerdict,
      deadline: this.session.deadline(options),
      write,
    });
  }
}
