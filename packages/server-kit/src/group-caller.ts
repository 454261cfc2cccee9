// Calls into another Raft group from a server (the kv leader asking the meta group for the
// topology; the meta leader asking a kv group to hand over slots): finds the leader among the
// group's addresses, follows NOT_LEADER hints, retries unavailable nodes, all within a deadline.
import * as grpc from '@grpc/grpc-js';
import { ERaftKvClient } from '@eraftkv/protocol';

export type UnaryMethod<Req, Resp> = (
  client: ERaftKvClient,
) => (
  req: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (err: grpc.ServiceError | null, resp: Resp) => void,
) => grpc.ClientUnaryCall;

/** How a response says "not the leader": the leader's address ('' when unknown), or null if it is an answer. */
export type LeaderHint<Resp> = (resp: Resp) => string | null;

export class GroupCallError extends Error {
  override name = 'GroupCallError';
}

export class GroupCaller {
  private readonly clients = new Map<string, ERaftKvClient>();
  private addresses: string[];
  private leaderGuess: string | null = null;

  constructor(
    addresses: readonly string[],
    private readonly messageBytesMax = 16 * 1024 * 1024,
  ) {
    this.addresses = [...addresses];
  }

  /** Replaces the group's addresses (membership changed). */
  setAddresses(addresses: readonly string[]): void {
    this.addresses = [...addresses];
    for (const [address, client] of this.clients) {
      if (!addresses.includes(address)) {
        client.close();
        this.clients.delete(address);
      }
    }
    if (this.leaderGuess !== null && !addresses.includes(this.leaderGuess)) this.leaderGuess = null;
  }

  private client(address: string): ERaftKvClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ERaftKvClient(address, grpc.credentials.createInsecure(), {
        'grpc.enable_channelz': 0,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.min_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.max_send_message_length': this.messageBytesMax,
        'grpc.max_receive_message_length': this.messageBytesMax,
      });
      this.clients.set(address, client);
    }
    return client;
  }

  /**
   * Calls `method` on the group's leader. Each attempt gets at most `attemptMs`; the whole call
   * gives up with a GroupCallError after `deadlineMs`.
   */
  async call<Req, Resp>(
    method: UnaryMethod<Req, Resp>,
    req: Req,
    leaderHint: LeaderHint<Resp>,
    options: { deadlineMs: number; attemptMs?: number },
  ): Promise<Resp> {
    const deadline = Date.now() + options.deadlineMs;
    const attemptMs = options.attemptMs ?? 2000;
    let next: string | undefined = this.leaderGuess ?? this.addresses[0];
    let lastProblem = 'no address to call';
    let tried = 0;
    while (next !== undefined && Date.now() < deadline) {
      const address = next;
      let resp: Resp;
      try {
        resp = await new Promise<Resp>((resolve, reject) => {
          const client = this.client(address);
          method(client).call(
            client,
            req,
            new grpc.Metadata(),
            { deadline: Math.min(deadline, Date.now() + attemptMs) },
            (err: grpc.ServiceError | null, value: Resp) => (err ? reject(err) : resolve(value)),
          );
        });
      } catch (err) {
        const e = err as grpc.ServiceError;
        lastProblem = `${address}: ${e.details || e.message}`;
        if (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.DEADLINE_EXCEEDED) {
          throw err;
        }
        if (this.leaderGuess === address) this.leaderGuess = null;
        next = this.afterFailure(address);
        if (++tried % this.addresses.length === 0) await pause(100);
        continue;
      }
      const hint = leaderHint(resp);
      if (hint === null) {
        this.leaderGuess = address;
        return resp;
      }
      lastProblem = `${address} is not the leader${hint ? ` (leader: ${hint})` : ''}`;
      if (hint !== '' && hint !== address) {
        next = hint;
      } else {
        next = this.afterFailure(address);
        // No leader known yet: an election is probably running.
        await pause(50);
      }
    }
    throw new GroupCallError(
      `no leader answered within ${options.deadlineMs} ms (last: ${lastProblem})`,
    );
  }

  /** The address after `address` in the list (round robin; the first if it is not listed). */
  private afterFailure(address: string): string | undefined {
    const i = this.addresses.indexOf(address);
    return this.addresses[(i + 1) % this.addresses.length];
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
