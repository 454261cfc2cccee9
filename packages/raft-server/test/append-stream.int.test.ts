// AppendEntriesStream end to end over real gRPC on 127.0.0.1: the sending side (AppendStream)
// against the serving side (peerServiceHandlers), with a scripted inbox standing in for the node.
import * as grpc from '@grpc/grpc-js';
import { ERaftKvClient, type AppendEntriesReq, type ERaftKvServer } from '@eraftkv/protocol';
import { message, MessageType, type Message } from '@eraftkv/raft';
import { peerServiceHandlers, type PeerAnswer, type PeerInbox, type PeerInput } from '../src';
import { AppendStream } from '../src/transport/append-stream';
import { unimplementedStream } from '@eraftkv/server-kit';
import { startFakeERaftKv, waitFor, type StartedServer } from '@eraftkv/test-support';

const identity = { groupId: 3, clusterId: 'test-cluster', incarnation: 22 };

/** An inbox whose answers the test releases when it wants, in any order. */
class ScriptedInbox implements PeerInbox {
  readonly selfId = 2;
  readonly identity = identity;
  readonly held: { m: Message; answer: () => void }[] = [];
  autoAnswer = false;

  receive<I extends PeerInput>(input: I): Promise<PeerAnswer<I>> {
    if (input.kind !== 'request') throw new Error('not used');
    return this.stepRequest(input.message) as Promise<PeerAnswer<I>>;
  }

  private stepRequest(m: Message): Promise<Message | null> {
    const response = message({
      type: MessageType.AppendResponse,
      from: m.to,
      to: m.from,
      term: m.term,
      index: m.index,
    });
    if (this.autoAnswer) return Promise.resolve(response);
    return new Promise((resolve) => this.held.push({ m, answer: () => resolve(response) }));
  }
  identify(): never {
    throw new Error('not used');
  }
  incarnationOf(): undefined {
    return undefined;
  }

  refused(): void {}
}

function append(index: number, groupId = identity.groupId): AppendEntriesReq {
  return {
    leaderId: 1,
    messageIndex: 0,
    term: 5,
    prevLogIndex: index,
    prevLogTerm: 5,
    leaderCommit: 0,
    isHeartbeat: false,
    entries: [],
    groupId,
    clusterId: identity.clusterId,
    toId: 2,
    fromIncarnation: 11,
    toIncarnation: identity.incarnation,
  };
}

describe('AppendEntriesStream', () => {
  const servers: StartedServer[] = [];
  const clients: ERaftKvClient[] = [];

  async function serve(
    inbox: PeerInbox,
    overrides: Partial<ERaftKvServer> = {},
  ): Promise<ERaftKvClient> {
    const server = await startFakeERaftKv({ ...peerServiceHandlers(inbox), ...overrides });
    servers.push(server);
    const client = new ERaftKvClient(server.address, grpc.credentials.createInsecure());
    clients.push(client);
    return client;
  }

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of servers) await s.close();
  });

  it('pipelines appends and answers them in request order even when the node answers out of order', async () => {
    const inbox = new ScriptedInbox();
    const stream = new AppendStream(await serve(inbox));
    const n = 200;
    const replies = Array.from({ length: n }, (_, i) => stream.send(append(i + 1), 10_000));
    await waitFor(() => inbox.held.length === n, { what: 'every append to reach the node' });
    // The node answers the last append first.
    for (const h of [...inbox.held].reverse()) h.answer();
    const answered = await Promise.all(replies);
    expect(answered.map((r) => r.currentIndex)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    stream.close();
  });

  it('fails an append the peer refuses with its status, then carries on over a new stream', async () => {
    const inbox = new ScriptedInbox();
    inbox.autoAnswer = true;
    const stream = new AppendStream(await serve(inbox));
    await expect(stream.send(append(1, 99), 5_000)).rejects.toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
      details: expect.stringContaining('group 99') as unknown,
    });
    await expect(stream.send(append(2), 5_000)).resolves.toMatchObject({ currentIndex: 2 });
    stream.close();
  });

  it('fails every append in flight when one misses its deadline, and the next opens a new stream', async () => {
    const inbox = new ScriptedInbox();
    const stream = new AppendStream(await serve(inbox));
    const first = stream.send(append(1), 200);
    const second = stream.send(append(2), 10_000);
    await expect(first).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await expect(second).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    inbox.autoAnswer = true;
    await expect(stream.send(append(3), 5_000)).resolves.toMatchObject({ currentIndex: 3 });
    stream.close();
  });

  it('falls back to unary AppendEntries calls when the peer does not serve the stream', async () => {
    const inbox = new ScriptedInbox();
    inbox.autoAnswer = true;
    const client = await serve(inbox, {
      appendEntriesStream: unimplementedStream('AppendEntriesStream'),
    });
    const stream = new AppendStream(client);
    await expect(stream.send(append(1), 5_000)).resolves.toMatchObject({ currentIndex: 1 });
    await expect(stream.send(append(2), 5_000)).resolves.toMatchObject({ currentIndex: 2 });
    await expect(stream.send(append(3), 5_000)).resolves.toMatchObject({ currentIndex: 3 });
    stream.close();
  });
});
