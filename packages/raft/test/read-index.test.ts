// ReadIndexQueue: linearizable reads share heartbeat rounds, with at most one round in flight.
import { type NodeId } from '../src/types';
import { ReadIndexQueue } from '../src/read-index';

/** A confirmation callback: true once the acks include a majority of `voters`. */
function majorityOf(voters: readonly NodeId[]): (acks: ReadonlySet<NodeId>) => boolean {
  return (acks) => voters.filter((id) => acks.has(id)).length > voters.length / 2;
}

const threeVoters = majorityOf([1, 2, 3]);
const self: NodeId = 1;

describe('ReadIndexQueue', () => {
  it('starts no round while nothing is queued', () => {
    const reads = new ReadIndexQueue(10);
    expect(reads.maybeStartRound(5, self)).toBe(0);
    expect(reads.inflightRound()).toBe(0);
    expect(reads.pendingCount()).toBe(0);
  });

  it('starts a round carrying every queued read', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    reads.enqueue(101);
    expect(reads.maybeStartRound(5, self)).toBe(1);
    expect(reads.inflightRound()).toBe(1);
    expect(reads.pendingCount()).toBe(2);
  });

  it('keeps at most one round in flight', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    reads.maybeStartRound(5, self);
    reads.enqueue(101);
    expect(reads.maybeStartRound(6, self)).toBe(0);
    expect(reads.inflightRound()).toBe(1);
    expect(reads.pendingCount()).toBe(2);
  });

  it('releases the round once a quorum acked, at the index where the round started', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    reads.enqueue(101);
    const round = reads.maybeStartRound(5, self);
    // The leader's own ack is counted from the start: one more makes two of three.
    expect(reads.recordAck(2, round, threeVoters)).toEqual([
      { requestId: 100, index: 5 },
      { requestId: 101, index: 5 },
    ]);
    expect(reads.inflightRound()).toBe(0);
    expect(reads.pendingCount()).toBe(0);
  });

  it('waits while the acks are not a quorum', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    const round = reads.maybeStartRound(5, self);
    const fiveVoters = majorityOf([1, 2, 3, 4, 5]);
    expect(reads.recordAck(2, round, fiveVoters)).toEqual([]);
    // A duplicate ack does not count twice.
    expect(reads.recordAck(2, round, fiveVoters)).toEqual([]);
    expect(reads.inflightRound()).toBe(round);
    expect(reads.recordAck(4, round, fiveVoters)).toEqual([{ requestId: 100, index: 5 }]);
  });

  it('passes the acks so far, including its own, to the confirmation', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    const round = reads.maybeStartRound(5, 3);
    const seen: NodeId[][] = [];
    reads.recordAck(2, round, (acks) => {
      seen.push([...acks].sort((a, b) => a - b));
      return false;
    });
    expect(seen).toEqual([[2, 3]]);
  });

  it('ignores acks for another round', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    const round = reads.maybeStartRound(5, self);
    const confirmed = jest.fn(() => true);
    expect(reads.recordAck(2, round + 1, confirmed)).toEqual([]);
    expect(reads.recordAck(2, 0, confirmed)).toEqual([]);
    expect(confirmed).not.toHaveBeenCalled();
    expect(reads.inflightRound()).toBe(round);
  });

  it('ignores acks while no round is in flight', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    expect(reads.recordAck(2, 1, () => true)).toEqual([]);
    expect(reads.pendingCount()).toBe(1);
  });

  it('sends reads queued during a round in the next round, at the next commit index', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    const first = reads.maybeStartRound(5, self);
    reads.enqueue(101);
    reads.enqueue(102);
    expect(reads.recordAck(2, first, threeVoters)).toEqual([{ requestId: 100, index: 5 }]);
    const second = reads.maybeStartRound(8, self);
    expect(second).toBe(first + 1);
    // An ack for the finished round does not release the new one.
    expect(reads.recordAck(3, first, threeVoters)).toEqual([]);
    expect(reads.recordAck(3, second, threeVoters)).toEqual([
      { requestId: 101, index: 8 },
      { requestId: 102, index: 8 },
    ]);
  });

  it('does not carry acks of one round over to the next', () => {
    const reads = new ReadIndexQueue(10);
    const fiveVoters = majorityOf([1, 2, 3, 4, 5]);
    reads.enqueue(100);
    const first = reads.maybeStartRound(5, self);
    reads.recordAck(2, first, fiveVoters);
    reads.recordAck(3, first, fiveVoters);
    reads.enqueue(101);
    const second = reads.maybeStartRound(6, self);
    // Only self and 4 acked the second round: two of five.
    expect(reads.recordAck(4, second, fiveVoters)).toEqual([]);
  });

  it('releaseAll releases the round and the queue at the given index', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    reads.maybeStartRound(5, self);
    reads.enqueue(101);
    expect(reads.releaseAll(9)).toEqual([
      { requestId: 100, index: 9 },
      { requestId: 101, index: 9 },
    ]);
    expect(reads.pendingCount()).toBe(0);
    expect(reads.inflightRound()).toBe(0);
    expect(reads.releaseAll(9)).toEqual([]);
  });

  it('reset drops every pending read, and later rounds get new numbers', () => {
    const reads = new ReadIndexQueue(10);
    reads.enqueue(100);
    const first = reads.maybeStartRound(5, self);
    reads.enqueue(101);
    reads.reset();
    expect(reads.pendingCount()).toBe(0);
    expect(reads.inflightRound()).toBe(0);
    expect(reads.recordAck(2, first, () => true)).toEqual([]);
    reads.enqueue(102);
    const next = reads.maybeStartRound(7, self);
    expect(next).toBeGreaterThan(first);
    // A late ack for the dropped round must not release the new one.
    expect(reads.recordAck(2, first, () => true)).toEqual([]);
    expect(reads.recordAck(2, next, threeVoters)).toEqual([{ requestId: 102, index: 7 }]);
  });

  it('is full once requestsMax reads are pending, queued or in flight', () => {
    const reads = new ReadIndexQueue(3);
    reads.enqueue(100);
    reads.enqueue(101);
    expect(reads.isFull()).toBe(false);
    reads.maybeStartRound(5, self);
    reads.enqueue(102);
    expect(reads.pendingCount()).toBe(3);
    expect(reads.isFull()).toBe(true);
    reads.recordAck(2, 1, threeVoters);
    expect(reads.pendingCount()).toBe(1);
    expect(reads.isFull()).toBe(false);
  });
});
