// Hostile numbers and lost data dirs against RaftServers over real gRPC and RocksDB: a term the
// log store cannot hold is refused and changes nothing; the largest term a peer may send still
// leaves the group able to elect, commit and restart; a node whose data dir was wiped is never
// counted as the member it was, and comes back through remove + add.
import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { ERaftKvClient, type RequestVoteReq, type RequestVoteResp } from '@eraftkv/protocol';
import { BootstrapRefusedError, peerNumberMax } from '../src';
import { waitFor } from '@eraftkv/test-support';
import { TestCluster, type TestNode } from './cluster';

jest.setTimeout(120_000);

function requestVote(address: string, req: RequestVoteReq): Promise<RequestVoteResp> {
  const client = new ERaftKvClient(address, grpc.credentials.createInsecure());
  return new Promise<RequestVoteResp>((resolve, reject) =>
    client.requestVote(req, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, resp) =>
      err ? reject(err) : resolve(resp),
    ),
  ).finally(() => client.close());
}

/** The gRPC error a call failed with (the test fails if it succeeded). */
async function rejection(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

/** A vote request from node `from` to `to` as the group addresses it (right incarnations). */
function voteFor(from: TestNode, to: TestNode, fields: Partial<RequestVoteReq>): RequestVoteReq {
  return {
    prevote: false,
    term: 1,
    candidateId: from.id,
    lastLogIdx: 0,
    lastLogTerm: 0,
    groupId: to.server.identity.groupId,
    clusterId: to.server.identity.clusterId,
    toId: to.id,
    leaderTransfer: false,
    fromIncarnation: from.server.identity.incarnation,
    toIncarnation: to.server.identity.incarnation,
    ...fields,
  };
}

async function proposeAll(cluster: TestCluster, commands: string[]): Promise<void> {
  for (const command of commands) {
    await waitFor(
      async () => {
        const leader = cluster.leader();
        if (leader === undefined) return false;
        await leader.server.propose(Buffer.from(command));
        return true;
      },
      { timeoutMs: 20_000, what: `the group to accept ${command}` },
    );
  }
}

async function waitForSameCommands(cluster: TestCluster, expected: string[]): Promise<void> {
  await waitFor(
    async () => {
      for (const node of cluster.running()) {
        const got = await node.sm.commands();
        if (got.length !== expected.length) return false;
      }
      return true;
    },
    { timeoutMs: 30_000, what: `every node to apply ${expected.length} commands` },
  );
  for (const node of cluster.running()) expect(await node.sm.commands()).toEqual(expected);
}

function refusedCount(node: TestNode, reason: string): Promise<number> {
  return node.server.registry
    .getSingleMetric('eraftkv_network_peer_received_refused_total')!
    .get()
    .then((m) => m.values.find((v) => v.labels.reason === reason)?.value ?? 0);
}

describe('RaftServer: terms and indexes from the wire', () => {
  const cluster = new TestCluster({ tickMs: 20 });
  const acked: string[] = [];

  beforeAll(async () => {
    await cluster.init();
    await cluster.startGroup(3);
  });
  afterAll(() => cluster.close());

  it.each([
    ['2^48 (beyond what storage holds)', 2 ** 48],
    ['2^53 - 1 (the largest safe integer)', Number.MAX_SAFE_INTEGER],
  ])('refuses a vote request with term %s and changes nothing', async (_name, term) => {
    const leader = await cluster.waitForLeader();
    const target = cluster.running().find((n) => n !== leader)!;
    const termBefore = target.server.status().term;
    const refusedBefore = await refusedCount(target, 'invalid');
    const refusal = await rejection(
      requestVote(
        target.address,
        voteFor(leader, target, {
          term,
          leaderTransfer: true,
          lastLogIdx: peerNumberMax,
          lastLogTerm: peerNumberMax,
        }),
      ),
    );
    expect(refusal.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refusal.details).toMatch(/^term must be an integer from 1 to 2\^48-1/);
    expect(await refusedCount(target, 'invalid')).toBe(refusedBefore + 1);
    // An election may have moved the term by one or two; the forged term was not taken.
    expect(target.server.status().term).toBeLessThan(termBefore + 100);
    expect(cluster.running().every((n) => n.server.fatalError() === null)).toBe(true);
    const commands = [`after-${term}-1`, `after-${term}-2`];
    await proposeAll(cluster, commands);
    acked.push(...commands);
    await waitForSameCommands(cluster, acked);
  });

  it('drops a vote request whose term is 2^48 - 1, far above the group’s, and changes nothing', async () => {
    const leader = await cluster.waitForLeader();
    const target = cluster.running().find((n) => n !== leader)!;
    const termBefore = target.server.status().term;
    const resp = await requestVote(
      target.address,
      voteFor(leader, target, {
        term: 2 ** 48 - 1,
        leaderTransfer: true,
        lastLogIdx: 2 ** 48 - 1,
        lastLogTerm: 2 ** 48 - 1,
      }),
    );
    expect(resp).toMatchObject({ dropped: true, voteGranted: false });
    expect(await refusedCount(target, 'term-jump')).toBe(1);
    // An election may have moved the term by one or two; the forged term was not taken.
    expect(target.server.status().term).toBeLessThan(termBefore + 100);
    await proposeAll(cluster, ['after-term-jump']);
    acked.push('after-term-jump');
    await waitForSameCommands(cluster, acked);
  });

  it('refuses a request addressed to another incarnation of the node', async () => {
    const leader = await cluster.waitForLeader();
    const target = cluster.running().find((n) => n !== leader)!;
    const own = target.server.identity.incarnation;
    const refusal = await rejection(
      requestVote(target.address, voteFor(leader, target, { toIncarnation: own + 1 })),
    );
    expect(refusal.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refusal.details).toContain(
      `message for incarnation ${own + 1} of node ${target.id} (group 7) reached incarnation ${own}`,
    );
    expect(await refusedCount(target, 'receiver-incarnation')).toBeGreaterThan(0);
  });

  it('refuses a vote asked by another incarnation of a member than the membership records', async () => {
    const leader = await cluster.waitForLeader();
    const voter = cluster.running().find((n) => n !== leader)!;
    const candidate = cluster.running().find((n) => n !== leader && n !== voter)!;
    const recorded = candidate.server.identity.incarnation;
    const term = voter.server.status().term + 1;
    // The candidate's id with another incarnation: a wiped node that learned an old membership.
    const refusal = await rejection(
      requestVote(
        voter.address,
        voteFor(candidate, voter, {
          term,
          fromIncarnation: recorded + 1,
          lastLogIdx: peerNumberMax,
          lastLogTerm: voter.server.status().term,
        }),
      ),
    );
    expect(refusal.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refusal.details).toContain(
      `vote asked by incarnation ${recorded + 1} of node ${candidate.id}, which the membership of node ${voter.id} records as incarnation ${recorded}`,
    );
    expect(await refusedCount(voter, 'candidate-incarnation')).toBe(1);
    // Nothing was stepped: the voter did not move to the candidate's term for it.
    expect(voter.server.status().vote === candidate.id && voter.server.status().term === term).toBe(
      false,
    );
    await proposeAll(cluster, ['after-candidate-incarnation']);
    acked.push('after-candidate-incarnation');
    await waitForSameCommands(cluster, acked);
  });

  it('survives the largest term jump a node takes: elects, commits and restarts above it', async () => {
    const leader = await cluster.waitForLeader();
    const target = cluster.running().find((n) => n !== leader)!;
    // A transfer-style vote request 2^32 terms ahead with an unbeatable log: the target grants it
    // and moves to that term, and so must the whole group, which then elects anew above it.
    const term = target.server.status().term + 2 ** 32;
    const resp = await requestVote(
      target.address,
      voteFor(leader, target, {
        term,
        leaderTransfer: true,
        lastLogIdx: peerNumberMax,
        lastLogTerm: term,
      }),
    );
    expect(resp).toMatchObject({ voteGranted: true, term });
    const commands = ['high-term-1', 'high-term-2'];
    await proposeAll(cluster, commands);
    acked.push(...commands);
    await waitForSameCommands(cluster, acked);
    const newLeader = await cluster.waitForLeader();
    expect(newLeader.server.status().term).toBeGreaterThan(term);
    // Every node stored the term and reads it back after a restart.
    for (const node of [...cluster.running()]) {
      const term = node.server.status().term;
      await cluster.stop(node.id);
      await cluster.start(node.id, null);
      expect(node.server.status().term).toBeGreaterThanOrEqual(term);
    }
    await proposeAll(cluster, ['after-restarts']);
    acked.push('after-restarts');
    await waitForSameCommands(cluster, acked);
  });
});

describe('RaftServer: adding a node asks it who it is', () => {
  const cluster = new TestCluster({ tickMs: 20 });

  beforeAll(async () => {
    await cluster.init();
    await cluster.startGroup(3);
  });
  afterAll(() => cluster.close());

  it('refuses to add a node that does not answer, or another node at that address', async () => {
    const leader = await cluster.waitForLeader();
    const other = cluster.running().find((n) => n !== leader)!;
    await expect(leader.server.addLearner(9, other.address)).rejects.toThrow(
      `member add: node 9 at ${other.address} refused: message for node 9 reached node ${other.id} of group 7`,
    );
    await expect(leader.server.addLearner(9, '127.0.0.1:1')).rejects.toThrow(
      /^cannot ask node 9 at 127.0.0.1:1 who it is \(.*\): start it first, with an empty --peers, then add it$/,
    );
    expect(leader.server.membership().map((m) => m.id)).toEqual([1, 2, 3]);
  });
});

describe('RaftServer: a node whose data dir was wiped', () => {
  const cluster = new TestCluster({
    tickMs: 20,
    snapshotEntries: 200,
    compactionMarginEntries: 10,
  });
  const acked: string[] = [];

  beforeAll(async () => {
    await cluster.init();
    await cluster.startGroup(3);
  });
  afterAll(() => cluster.close());

  it('is refused at start with --peers, saying what happened and what to do', async () => {
    const commands = Array.from({ length: 300 }, (_, i) => `before-${i}`);
    await proposeAll(cluster, commands);
    acked.push(...commands);
    await waitForSameCommands(cluster, acked);
    const leader = await cluster.waitForLeader();
    const victim = cluster.running().find((n) => n !== leader)!;
    const oldIncarnation = victim.server.identity.incarnation;
    const members = leader.server.membership().map((m) => ({ ...m, incarnation: 0 }));
    await cluster.stop(victim.id);
    await rm(victim.dataDir, { recursive: true, force: true });
    const attempt = cluster.start(victim.id, members);
    await expect(attempt).rejects.toThrow(BootstrapRefusedError);
    await expect(attempt).rejects.toThrow(
      new RegExp(
        `group 7 already has a node ${victim.id}, incarnation ${oldIncarnation} \\(says node \\d\\), but data dir .* was created anew as incarnation \\d+: this node lost its data`,
      ),
    );
    await expect(attempt).rejects.toThrow(/eraftkv-ctl member remove --group 7/);
  });

  it('is not counted while it runs as a new node, and comes back through remove and add', async () => {
    const leader = await cluster.waitForLeader();
    const victim = [...cluster.nodes.values()].find((n) => !n.running)!;
    const oldIncarnation = leader.server.membership().find((m) => m.id === victim.id)!.incarnation;
    // Started as a joiner (empty --peers): the group still addresses the old incarnation.
    await cluster.start(victim.id, null);
    expect(victim.server.identity.incarnation).not.toBe(oldIncarnation);
    await waitFor(
      () => /not a member: message for incarnation/.test(victim.server.health().reason),
      {
        timeoutMs: 10_000,
        what: 'the wiped node to report that the group knows another incarnation',
      },
    );
    expect(victim.server.health().healthy).toBe(false);
    expect(victim.server.status().applied).toBe(0);
    // The group goes on with two of three; its acknowledged writes are all there.
    const during = ['while-wiped-1', 'while-wiped-2'];
    await proposeAll(cluster, during);
    acked.push(...during);
    expect(leader.server.status().progress.find((p) => p.id === victim.id)?.match).toBeLessThan(
      leader.server.status().commit,
    );
    // The operator's path: remove the node and add it again as what it is now.
    await leader.server.removeMember(victim.id);
    const membership = await leader.server.addLearner(victim.id, victim.address);
    expect(membership.find((m) => m.id === victim.id)?.incarnation).toBe(
      victim.server.identity.incarnation,
    );
    await waitForSameCommands(cluster, acked);
    await waitFor(() => victim.server.health().healthy, {
      timeoutMs: 20_000,
      what: 'the re-added node to be healthy',
    });
    await waitFor(() => leader.server.membership().some((m) => m.id === victim.id && !m.learner), {
      timeoutMs: 20_000,
      what: 'the re-added node to be promoted',
    });
  });
});
