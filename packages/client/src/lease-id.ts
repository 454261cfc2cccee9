// Lease ids (docs/leases.md): a lease belongs to one kv group, and its id carries the group
// (@eraftkv/protocol's lease-id.ts). Its group's leader is the one to ask about it.
import { groupOfLeaseId, leaseIdProblem } from '@eraftkv/protocol';
import { InvalidArgumentError } from './errors';

export { formatLeaseId, leaseIdGroupFactor } from '@eraftkv/protocol';

/** The kv group of lease `id`; InvalidArgumentError when `id` cannot be a lease id. */
export function leaseGroupOf(id: number): number {
  const problem = leaseIdProblem(id);
  if (problem !== null) throw new InvalidArgumentError(problem);
  return groupOfLeaseId(id);
}
