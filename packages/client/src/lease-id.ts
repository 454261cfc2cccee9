// Lease ids (docs/leases.md): a lease belongs to one kv group, and its id carries the group
// (@eraftkv/protocol's lease-id.ts). Its group's leader is the one to ask about it.
import { groupOfLeaseId, isLeaseId } from '@eraftkv/protocol';
import { InvalidArgumentError } from './errors';

export { formatLeaseId, leaseIdGroupFactor } from '@eraftkv/protocol';

/** The kv group of lease `id`; InvalidArgumentError when `id` cannot be a lease id. */
export function leaseGroupOf(id: number): number {
  if (!isLeaseId(id)) {
    throw new InvalidArgumentError(
      `${String(id)} is not a lease id (a lease id is group * 2^32 + n, with group and n >= 1)`,
    );
  }
  return groupOfLeaseId(id);
}
