// Who a call comes from and what it may do, once auth is enabled (docs/security.md):
//
// - a user is the CN of the client certificate the node verified (only with --client-cert-auth:
//   without it a presented certificate is not checked, so it names nobody);
// - a member is a node whose peer certificate (signed by a --peer-trusted-ca-file CA) names it; the
//   servers' own calls to each other (config watch, slot moves) come from members;
// - the AuthTable says what a user may do; the role root may do anything.
//
// With auth disabled every call may do everything, as before auth existed. Refusals are
// AccessDeniedErrors: UNAUTHENTICATED when the call names nobody, PERMISSION_DENIED otherwise.
import { AccessDeniedError, type PeerCall } from '@eraftkv/raft-server';
import type { AuthTable } from './auth-table';

/** What the node knows of a call's origin. */
export interface Caller {
  /** The user (client certificate CN), null when the call names none. */
  readonly user: string | null;
  /** The group of the member whose peer certificate the call came with (computed on demand). */
  memberOf(): number | null;
}

/** Finds a call's origin (NodeTls.callerOf; everyone is anonymous without TLS). */
export type CallerOf = (call: PeerCall) => Caller;

export const anonymousCaller: Caller = { user: null, memberOf: () => null };

export const anonymous: CallerOf = () => anonymousCaller;

/** A key check of one operation: [start, end) (end empty: start alone; end \0: to the end). */
export interface KeyAccess {
  readonly kind: 'read' | 'write';
  readonly start: Buffer;
  readonly end: Buffer;
  /** How the refusal names the operation, e.g. "kvs[2] (Put)". */
  readonly what: string;
}

function printable(key: Buffer): string {
  const text = key.toString('utf8');
  return /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text) : `0x${key.toString('hex')}`;
}

function describeKeys(a: KeyAccess): string {
  if (a.end.length === 0) return `key ${printable(a.start)}`;
  if (a.end.length === 1 && a.end[0] === 0) return `keys from ${printable(a.start)} on`;
  return `keys [${printable(a.start)}, ${printable(a.end)})`;
}

/** The checks a server makes against the auth table it holds. */
export class AccessControl {
  constructor(
    /** The table as this node has applied it (the meta state, or a kv group's log). */
    private readonly table: () => AuthTable,
    readonly callerOf: CallerOf,
  ) {}

  get enabled(): boolean {
    return this.table().enabled;
  }

  /**
   * Refuses a call that may not administer the cluster (topology, membership, leadership, auth):
   * it needs a user holding root, or (for a server's own calls) a member of one of `members`.
   */
  requireAdmin(call: PeerCall, what: string, members: readonly number[] | 'any' = []): void {
    const table = this.table();
    if (!table.enabled) return;
    const caller = this.callerOf(call);
    if (caller.user !== null && table.mayAdminister(caller.user)) return;
    const group = members.length > 0 ? caller.memberOf() : null;
    if (group !== null && (members === 'any' || members.includes(group))) return;
    throw this.refusal(caller, `${what} needs the role root`);
  }

  /** Refuses a call whose user may not read or write every key listed (all or nothing). */
  requireKeys(caller: Caller, accesses: readonly KeyAccess[]): void {
    const table = this.table();
    if (!table.enabled) return;
    const user = caller.user;
    if (user === null) throw this.refusal(caller, 'reading or writing keys needs a user');
    for (const a of accesses) {
      if (!table.permits(user, a.kind, a.start, a.end)) {
        throw this.refusal(
          caller,
          `user "${user}" may not ${a.kind} ${describeKeys(a)} (${a.what}); nothing in the request was done`,
        );
      }
    }
  }

  private refusal(caller: Caller, message: string): AccessDeniedError {
    const table = this.table();
    if (caller.user === null) {
      return new AccessDeniedError(
        'unauthenticated',
        `auth is enabled and the call names no user: ${message}; present a client certificate whose CN is a user (the node needs --client-cert-auth)`,
      );
    }
    if (!table.hasUser(caller.user)) {
      return new AccessDeniedError(
        'permission-denied',
        `${message}; the client certificate's CN "${caller.user}" is not a user (eraftkv-ctl user add)`,
      );
    }
    return new AccessDeniedError('permission-denied', message);
  }
}
