// How a consistency check's digests are judged (the kv leader and eraftkv-ctl share it).
import { judgeDigests, type ReplicaDigest } from '../src';

const replica = (nodeId: number, digest: string): ReplicaDigest => ({
  nodeId,
  address: `n${nodeId}:7088`,
  digest,
  error: digest === '' ? 'no digest' : '',
  isLearner: false,
});

describe('judgeDigests', () => {
  it('names the replica that differs from the majority', () => {
    const v = judgeDigests([replica(1, 'aa'), replica(2, 'bb'), replica(3, 'aa')]);
    expect(v.majority).toBe('aa');
    expect(v.differing.map((r) => r.nodeId)).toEqual([2]);
    expect(v.missing).toEqual([]);
  });

  it('counts a replica without a digest as missing, not as differing', () => {
    const v = judgeDigests([replica(1, 'aa'), replica(2, ''), replica(3, 'aa')]);
    expect(v.differing).toEqual([]);
    expect(v.missing.map((r) => r.nodeId)).toEqual([2]);
  });

  it('suspects every answering replica when no digest has a majority', () => {
    const v = judgeDigests([replica(1, 'aa'), replica(2, 'bb'), replica(3, '')]);
    expect(v.majority).toBe('');
    expect(v.differing.map((r) => r.nodeId)).toEqual([1, 2]);
    // One answer out of three agrees with nothing, and differs from nothing either.
    expect(judgeDigests([replica(1, 'aa'), replica(2, ''), replica(3, '')]).differing).toEqual([]);
  });
});
