// How the replicas' digests of one consistency check (HashKvResp) are judged, the same by the
// kv leader's background check and by eraftkv-ctl endpoint hashkv: the digest more than half of
// the replicas hold is the group's; an answering replica with another digest differs (and when no
// digest has a majority, every answering replica does, unless they all agree); a replica that
// gave no digest is missing, which is not a difference.
import type { ReplicaDigest } from './generated/eraftkv';

export interface DigestVerdict {
  /** The digest more than half of the replicas hold ('' when none does). */
  readonly majority: string;
  /** Replicas that gave another digest. */
  readonly differing: ReplicaDigest[];
  /** Replicas that gave no digest (see their error). */
  readonly missing: ReplicaDigest[];
}

export function judgeDigests(replicas: readonly ReplicaDigest[]): DigestVerdict {
  const counts = new Map<string, number>();
  for (const r of replicas)
    if (r.digest !== '') counts.set(r.digest, (counts.get(r.digest) ?? 0) + 1);
  let majority = '';
  for (const [digest, n] of counts) if (n > replicas.length / 2) majority = digest;
  const answered = replicas.filter((r) => r.digest !== '');
  return {
    majority,
    differing: answered.filter((r) => (majority === '' ? counts.size > 1 : r.digest !== majority)),
    missing: replicas.filter((r) => r.digest === ''),
  };
}
