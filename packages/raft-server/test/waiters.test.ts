// The waiters (waiters.ts): registered by id, triggered with a result or failed with an error,
// all failed at once on stop; reads served once applied; transfers done or abandoned.
import { message, MessageType } from '@eraftkv/raft';
import { PendingAnswers, PendingReads, PendingTransfers, Wait } from '../src/waiters';

describe('Wait', () => {
  it('settles each id once, with its result or its error, and fails all on stop', async () => {
    const wait = new Wait<number, string, number>();
    const a = wait.register(1, 10);
    const b = wait.register(2, 20);
    const c = wait.register(3, 30);
    await expect(wait.register(1, 0)).rejects.toThrow('duplicate wait id 1');
    expect(wait.trigger(1, 'one')).toBe(true);
    expect(wait.trigger(1, 'again')).toBe(false);
    await expect(a).resolves.toBe('one');
    wait.failWhere(
      (_id, tag) => tag <= 20,
      (id) => new Error(`dropped ${id}`),
    );
    await expect(b).rejects.toThrow('dropped 2');
    expect(wait.size).toBe(1);
    wait.failAll(new Error('stopped'));
    await expect(c).rejects.toThrow('stopped');
    expect(wait.size).toBe(0);
  });
});

describe('PendingReads', () => {
  it('serves a read once it is confirmed and its index applied; fails unconfirmed reads on leader loss', async () => {
    const reads = new PendingReads();
    const served: number[] = [];
    const ids = [reads.nextRequestId(), reads.nextRequestId(), reads.nextRequestId()];
    const [first, second, third] = ids.map((id) => reads.register(id));
    void first.then(() => served.push(1));
    void second.then(() => served.push(2));
    reads.confirmed(ids[0], 5, 5);
    reads.confirmed(ids[1], 9, 5);
    await first;
    expect(served).toEqual([1]);
    reads.applied(8);
    await Promise.resolve();
    expect(served).toEqual([1]);
    reads.applied(9);
    await second;
    expect(served).toEqual([1, 2]);
    reads.failUnconfirmed(new Error('not leader'));
    await expect(third).rejects.toThrow('not leader');
  });
});

describe('PendingTransfers', () => {
  it('is done when the target leads and abandoned after its deadline', async () => {
    const transfers = new PendingTransfers();
    const toTwo = transfers.register(2, 1000);
    const toThree = transfers.register(3, 1000);
    transfers.leaderChanged(2);
    await expect(toTwo).resolves.toBeUndefined();
    transfers.expire(999);
    transfers.expire(1001);
    await expect(toThree).rejects.toThrow(
      'node 3 did not take over leadership in time; the transfer was abandoned',
    );
  });
});

describe('PendingAnswers', () => {
  it('answers the earliest matching request and drops those the core did not answer', async () => {
    const answers = new PendingAnswers();
    const append = (from: number): ReturnType<typeof message> =>
      message({ type: MessageType.Append, from, to: 9, term: 1 });
    const fromOne = answers.register(append(1));
    const fromTwo = answers.register(append(2));
    const cutoff = answers.cutoff();
    const later = answers.register(append(1));
    const response = message({ type: MessageType.AppendResponse, from: 9, to: 1, term: 1 });
    answers.answer(response);
    await expect(fromOne).resolves.toBe(response);
    answers.droppedBefore(cutoff);
    await expect(fromTwo).resolves.toBeNull();
    answers.dropAll();
    await expect(later).resolves.toBeNull();
  });
});
