// Key permissions as both sides of the Auth RPC name them: the wire's PermissionType and the
// words of the auth table and of eraftkv-ctl, and the range end of "every key with a prefix".
import { PermissionType } from './generated/eraftkv';

export type PermissionName = 'read' | 'write' | 'readwrite';

const names: Record<PermissionType, PermissionName | undefined> = {
  [PermissionType.READ]: 'read',
  [PermissionType.WRITE]: 'write',
  [PermissionType.READWRITE]: 'readwrite',
  [PermissionType.UNRECOGNIZED]: undefined,
};

const types: Record<PermissionName, PermissionType> = {
  read: PermissionType.READ,
  write: PermissionType.WRITE,
  readwrite: PermissionType.READWRITE,
};

/** The name of a wire permission type; undefined for a value the contract does not define. */
export function permissionName(type: PermissionType): PermissionName | undefined {
  return names[type];
}

export function permissionType(name: PermissionName): PermissionType {
  return types[name];
}

/**
 * The end of the range of every key that starts with `prefix`: the prefix with its last byte below
 * 0xff incremented (and what follows dropped); a single 0 byte ("every key from the prefix on")
 * when there is none.
 */
export function prefixRangeEnd(prefix: Uint8Array): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]);
}
