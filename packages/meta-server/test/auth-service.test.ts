// What an Auth request asks the meta group for, and the wire fields refused before anything is
// proposed.
import { AuthAction, AuthReq, PermissionType } from '@eraftkv/protocol';
import { InvalidArgumentError } from '@eraftkv/raft-server';
import { authNameBytesMax, permissionKeyBytesMax } from '@eraftkv/server-kit';
import { authCommandOf } from '../src';

const req = (fields: Partial<AuthReq>): AuthReq => AuthReq.fromPartial(fields);

describe('authCommandOf', () => {
  it('turns each action into its table change, reads into none', () => {
    expect(authCommandOf(req({ action: AuthAction.AuthStatus }))).toBeNull();
    expect(authCommandOf(req({ action: AuthAction.AuthList }))).toBeNull();
    expect(authCommandOf(req({ action: AuthAction.UserGrantRole, user: 'u', role: 'r' }))).toEqual({
      kind: 'user-grant-role',
      user: 'u',
      role: 'r',
    });
    expect(
      authCommandOf(
        req({
          action: AuthAction.RoleGrantPermission,
          role: 'r',
          permission: {
            permType: PermissionType.READWRITE,
            key: Buffer.from('a/'),
            rangeEnd: Buffer.from('a0'),
          },
        }),
      ),
    ).toEqual({
      kind: 'role-grant-permission',
      role: 'r',
      permission: { type: 'readwrite', key: Buffer.from('a/'), rangeEnd: Buffer.from('a0') },
    });
  });

  it('refuses names and keys longer than the table holds, and a missing permission, naming the field', () => {
    const long = 'x'.repeat(authNameBytesMax + 1);
    expect(() => authCommandOf(req({ action: AuthAction.UserDelete, user: long }))).toThrow(
      new InvalidArgumentError(
        `user is ${authNameBytesMax + 1} bytes; a name is at most ${authNameBytesMax}`,
      ),
    );
    expect(() => authCommandOf(req({ action: AuthAction.RoleAdd, role: long }))).toThrow(
      /^role is/,
    );
    expect(() =>
      authCommandOf(
        req({
          action: AuthAction.RoleRevokePermission,
          role: 'r',
          permission: {
            permType: PermissionType.READ,
            key: Buffer.from('k'),
            rangeEnd: Buffer.alloc(permissionKeyBytesMax + 1, 1),
          },
        }),
      ),
    ).toThrow(/permission.range_end is 4097 bytes/);
    expect(() => authCommandOf(req({ action: AuthAction.RoleGrantPermission, role: 'r' }))).toThrow(
      /permission is required/,
    );
  });
});
