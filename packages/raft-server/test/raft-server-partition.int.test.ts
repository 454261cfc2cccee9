// A leader cut off from its group while it has proposals in flight, over real gRPC: its
// proposals are settled, one way or the other, even when the group writes nothing more.
import { Role } from '@eraftkv/raft';
import { ProposalDroppedError } from '../src';
import { waitFor } from '@eraftkv/test-support';
import { TestCluster } from './cluster';

jest.setTimeout(60_000);

describe('RaftServer: a leader partitioned with proposals in flight', () => {
  const cluster = new TestCluster({ tickMs: 20 });

  beforeAll(async () => {
    await cluster.init();
    await cluster.startGroup(3);
  });
  afterAll(() => cluster.close());

  it('fails the proposals its log lost once it leads again, in a group that writes nothing else', async () => {
    const old = await cluster.waitForLeader();
    await old.server.propose(Buffer.from('before'));
    const oldTerm = old.server.status().term;

    // Cut off, the leader still takes proposals: they reach its log and nobody else's.
    cluster.isolate(old.id);
    const lost = ['x', 'y', 'z', 'w'].map((c) =>
      old.server.propose(Buffer.from(c)).then(
        () => 'applied',
        (err: unknown) => err,
      ),
    );
    const others = cluster.running().filter((n) => n !== old);
    const next = await waitFor(
      () => others.find((n) => n.server.isLeader() && n.server.status().term > oldTerm),
      { timeoutMs: 20_000, what: 'a leader among the two others' },
    );

    // Healed, the old leader follows: its four entries give way to the new leader's no-op.
    cluster.heal();
    await waitFor(
      () =>
        old.server.status().role === Role.Follower &&
        old.server.status().lastIndex === next.server.status().lastIndex &&
        old.server.status().commit === next.server.status().commit,
      { timeoutMs: 20_000, what: "the old leader to take the new leader's log" },
    );

    // It leads again. Nothing else is written: the indices of y, z and w are reached only by its
    // own no-op (y's), or never.
    await next.server.transferLeader(old.id);
    await waitFor(() => old.server.isLeader(), { timeoutMs: 20_000, what: 'the old leader back' });
    let timer: NodeJS.Timeout | undefined;
    const settled = await Promise.race([
      Promise.all(lost),
      new Promise<'still waiting'>((resolve) => {
        timer = setTimeout(() => resolve('still waiting'), 5000);
      }),
    ]).finally(() => clearTimeout(timer));
    expect(settled).not.toBe('still waiting');
    const outcomes = settled as unknown[];
    for (const outcome of outcomes) expect(outcome).toBeInstanceOf(ProposalDroppedError);
    // None of them reached a state machine.
    for (const node of cluster.running()) {
      const commands = await node.sm.commands();
      for (const c of ['x', 'y', 'z', 'w']) expect(commands).not.toContain(c);
    }
    // And it serves: a new proposal commits.
    await old.server.propose(Buffer.from('after'));
  });
});
