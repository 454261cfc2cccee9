// Lease ids (docs/leases.md): a lease belongs to one kv group, and its id carries the group:
// id = group * 2^32 + n, n >= 1. Its group's leader is the one to ask about it.
import { InvalidArgumentError } from './errors';

/** What a lease id's group is multiplied by. */
export const leaseIdGroupFactor = 2 ** 32;

/** The kv group of lease `id`; InvalidArgumentError when `id` cannot be a lease id. */
export function leaseGroupOf(id: number): number {
  if (!Number.isSafeInteger(id) || id <= leaseIdGroupFactor || id % leaseIdGroupFactor === 0) {
    throw new InvalidArgumentError(
      `${String(id)} is not a lease id (a lease id is group * 2^32 + n, with group and n >= 1)`,
    );
  }
  return Math.floor(id / leaseIdGroupFactor);
}

/**
 * Lease `id` in hex, 16 digits as etcdctl prints lease ids: the first 8 are the group, the last 8
 * the lease's number in it.
 */
export function formatLeaseId(id: number): string {
  return id.toString(16).padStart(16, '0');
}
