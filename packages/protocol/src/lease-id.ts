// Lease ids (docs/leases.md): a lease belongs to one kv group, and its id carries the group:
// id = group * 2^32 + n, where n >= 1 is the log index of the grant in that group. The servers
// make them; clients find the group to ask from them.

/** What a lease id's group is multiplied by. */
export const leaseIdGroupFactor = 2 ** 32;

/** The largest group id whose lease ids are safe integers. */
export const leaseGroupMax = Math.floor(Number.MAX_SAFE_INTEGER / leaseIdGroupFactor) - 1;

/** Whether `id` can be a lease id: a safe integer with a group and an n of at least 1. */
export function isLeaseId(id: number): boolean {
  return Number.isSafeInteger(id) && id > leaseIdGroupFactor && id % leaseIdGroupFactor !== 0;
}

/** Why `id` cannot be a lease id, or null when it can (for refusals of untrusted ids). */
export function leaseIdProblem(id: number): string | null {
  return isLeaseId(id)
    ? null
    : `${String(id)} is not a lease id (a lease id is group * 2^32 + n, with group and n >= 1)`;
}

/** The kv group a lease id carries (the caller checks isLeaseId where the id is untrusted). */
export function groupOfLeaseId(id: number): number {
  return Math.floor(id / leaseIdGroupFactor);
}

/** The id of the lease granted at log index `n` of `group`; null when it cannot be one. */
export function leaseIdOf(group: number, n: number): number | null {
  if (!Number.isSafeInteger(group) || group < 1 || group > leaseGroupMax) return null;
  if (!Number.isSafeInteger(n) || n < 1 || n >= leaseIdGroupFactor) return null;
  return group * leaseIdGroupFactor + n;
}

/**
 * Lease `id` in hex, 16 digits as etcdctl prints lease ids: the first 8 are the group, the last 8
 * the lease's number in it.
 */
export function formatLeaseId(id: number): string {
  return id.toString(16).padStart(16, '0');
}
