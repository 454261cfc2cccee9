// The Auth RPC on a meta server (docs/security.md): users, roles and permissions live in the meta
// group's state and change through its log like the topology. Reads (AuthStatus, AuthList) are
// linearizable through ReadIndex on the leader unless they ask to be serializable; changes are
// proposed and answered once applied. With auth enabled, changes and AuthList need the role root
// (AuthList is also open to cluster members: kv group leaders fetch the table to put it in their
// logs); AuthStatus is open to everyone.
import {
  AuthAction,
  ErrorCode,
  permissionName,
  permissionType,
  type AuthReq,
  type AuthResp,
  type ERaftKvServer,
  type Permission as WirePermission,
} from '@eraftkv/protocol';
import {
  authNameBytesMax,
  errorAnswer,
  permissionKeyBytesMax,
  rootUser,
  unaryHandler,
  type AccessControl,
  type AuthCommand,
  type AuthTable,
  type Permission,
} from '@eraftkv/server-kit';
import {
  InvalidArgumentError,
  NotLeaderError,
  type Logger,
  type RaftServer,
} from '@eraftkv/raft-server';
import type { CommandOutcome, RequestId, Topology, TopologyCommand } from './topology';
import { clientIdBytesMax } from './meta-service';
import { isRequestId } from './topology';

export interface AuthServiceDeps {
  readonly raft: RaftServer<CommandOutcome>;
  readonly propose: (command: TopologyCommand) => Promise<CommandOutcome>;
  readonly topology: () => Topology;
  readonly access: AccessControl;
  /**
   * Why auth cannot be enabled on this node, or null: users are told apart only with
   * --client-cert-auth, and members only with peer certificates.
   */
  readonly authUnsupported: () => string | null;
  readonly logger: Logger;
}

function invalid(message: string): never {
  throw new InvalidArgumentError(message);
}

function permissionOf(req: AuthReq): WirePermission {
  if (req.permission === undefined) invalid('permission is required');
  for (const field of ['key', 'rangeEnd'] as const) {
    if (req.permission[field].length > permissionKeyBytesMax) {
      invalid(
        `permission.${field === 'key' ? 'key' : 'range_end'} is ${req.permission[field].length} bytes; the limit is ${permissionKeyBytesMax}`,
      );
    }
  }
  return req.permission;
}

/**
 * Refuses a user or role name longer than the table could hold, before anything is proposed (a
 * name the table cannot know would only take room in the meta log).
 */
function checkNames(req: AuthReq): void {
  for (const field of ['user', 'role'] as const) {
    const bytes = Buffer.byteLength(req[field], 'utf8');
    if (bytes > authNameBytesMax) {
      invalid(`${field} is ${bytes} bytes; a name is at most ${authNameBytesMax}`);
    }
  }
}

/** The table change a request asks for; null for reads. Throws InvalidArgumentError. */
export function authCommandOf(req: AuthReq): AuthCommand | null {
  checkNames(req);
  switch (req.action) {
    case AuthAction.AuthStatus:
    case AuthAction.AuthList:
      return null;
    case AuthAction.AuthEnable:
      return { kind: 'auth-enable' };
    case AuthAction.AuthDisable:
      return { kind: 'auth-disable' };
    case AuthAction.UserAdd:
      return { kind: 'user-add', user: req.user };
    case AuthAction.UserDelete:
      return { kind: 'user-delete', user: req.user };
    case AuthAction.UserGrantRole:
      return { kind: 'user-grant-role', user: req.user, role: req.role };
    case AuthAction.UserRevokeRole:
      return { kind: 'user-revoke-role', user: req.user, role: req.role };
    case AuthAction.RoleAdd:
      return { kind: 'role-add', role: req.role };
    case AuthAction.RoleDelete:
      return { kind: 'role-delete', role: req.role };
    case AuthAction.RoleGrantPermission: {
      const p = permissionOf(req);
      return {
        kind: 'role-grant-permission',
        role: req.role,
        permission: {
          key: Buffer.from(p.key),
          rangeEnd: Buffer.from(p.rangeEnd),
          type:
            permissionName(p.permType) ?? invalid('permission.perm_type is not a PermissionType'),
        },
      };
    }
    case AuthAction.RoleRevokePermission: {
      const p = permissionOf(req);
      return {
        kind: 'role-revoke-permission',
        role: req.role,
        key: Buffer.from(p.key),
        rangeEnd: Buffer.from(p.rangeEnd),
      };
    }
    case AuthAction.UNRECOGNIZED:
    default:
      return invalid(`unknown action ${String(req.action)}`);
  }
}

function requestOf(req: AuthReq): RequestId | null {
  if (Buffer.byteLength(req.clientId, 'utf8') > clientIdBytesMax)
    invalid(`client_id is longer than ${clientIdBytesMax} bytes`);
  if (!Number.isSafeInteger(req.commandId) || req.commandId < 0)
    invalid(`command_id must be a non-negative integer, got ${req.commandId}`);
  return isRequestId(req.clientId, req.commandId)
    ? { clientId: req.clientId, commandId: req.commandId }
    : null;
}

function permissionToWire(p: Permission): WirePermission {
  return { permType: permissionType(p.type), key: p.key, rangeEnd: p.rangeEnd };
}

export function authHandler(deps: AuthServiceDeps): ERaftKvServer['auth'] {
  const { raft } = deps;

  const answer = (
    table: AuthTable,
    caller: string,
    outcome: { code: ErrorCode; message: string; leaderAddress?: string },
    list: boolean,
  ): AuthResp => ({
    errorCode: outcome.code,
    errorMessage: outcome.message,
    leaderAddress: outcome.leaderAddress ?? raft.addressOf(raft.leaderId()),
    enabled: table.enabled,
    revision: table.revision,
    users: list ? table.listUsers().map((u) => ({ name: u.user, roles: u.roles })) : [],
    roles: list
      ? table
          .listRoles()
          .map((r) => ({ name: r.role, permissions: r.permissions.map(permissionToWire) }))
      : [],
    tableJson: list ? Buffer.from(JSON.stringify(table.toJson()), 'utf8') : Buffer.alloc(0),
    caller,
  });

  return unaryHandler<AuthReq, AuthResp>(async (req, call) => {
    const change = authCommandOf(req);
    const request = requestOf(req);
    const caller = deps.access.callerOf(call);
    const callerName = caller.user ?? '';
    const list = req.action === AuthAction.AuthList;
    if (change !== null) deps.access.requireAdmin(call, 'changing users, roles or permissions');
    if (list) deps.access.requireAdmin(call, 'listing users and roles', 'any');
    try {
      if (change === null) {
        if (!req.serializable) {
          if (!raft.isLeader()) {
            const leader = raft.leaderId() === raft.selfId ? 0 : raft.leaderId();
            throw new NotLeaderError(leader, raft.addressOf(leader));
          }
          await raft.readIndex();
        }
        return answer(deps.topology().auth, callerName, { code: ErrorCode.OK, message: '' }, list);
      }
      if (change.kind === 'auth-enable') {
        const why = deps.authUnsupported();
        if (why !== null) {
          return answer(
            deps.topology().auth,
            callerName,
            { code: ErrorCode.REJECTED, message: `auth cannot be enabled: ${why}` },
            false,
          );
        }
        // Enabling from a connection that is not root would lock its caller out at once (the
        // table itself refuses while no user "root" holds root, which is said first).
        const table = deps.topology().auth;
        if (table.holdsRoot(rootUser) && (caller.user === null || !table.holdsRoot(caller.user))) {
          return answer(
            deps.topology().auth,
            callerName,
            {
              code: ErrorCode.REJECTED,
              message: `auth can be enabled only by a user with the role root (this call comes from ${caller.user === null ? 'no user: present a client certificate' : `user "${caller.user}"`})`,
            },
            false,
          );
        }
      }
      const outcome = await deps.propose({ kind: 'auth', change, request });
      return answer(
        deps.topology().auth,
        callerName,
        { code: outcome.code, message: outcome.message },
        false,
      );
    } catch (err) {
      const a = errorAnswer(err);
      return answer(
        deps.topology().auth,
        callerName,
        { code: a.errorCode, message: a.errorMessage, leaderAddress: a.leaderAddress },
        false,
      );
    }
  }, deps.logger);
}
