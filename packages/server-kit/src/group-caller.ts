// How a server calls into another Raft group (the kv leader asking the meta group for the
// topology; the meta leader asking a kv group to hand over slots): through the client's
// LeaderCaller, the one policy for finding a leader, following its hints and retrying within a
// deadline, over a connection pool of the caller's own.
import type { ChannelCredentials } from '@grpc/grpc-js';
import { Connections, LeaderCaller } from '@eraftkv/client';

export interface GroupCallerOptions {
  /** The largest gRPC message sent or received (default 16 MiB). */
  readonly messageBytesMax?: number;
  /** How long one attempt on one server may take (default 2000 ms). */
  readonly attemptTimeoutMs?: number;
  /** TLS with the node's peer certificate (NodeTls.peerCredentials); default plaintext. */
  readonly credentials?: ChannelCredentials;
}

/**
 * A LeaderCaller for a server. Unlike the client's, it does not give up early when every server
 * refuses the connection: a group whose nodes are all restarting is expected to come back, so a
 * server's call retries until its deadline.
 */
export function groupCaller(options: GroupCallerOptions = {}): LeaderCaller {
  return new LeaderCaller(new Connections(options.messageBytesMax, options.credentials), {
    attemptTimeoutMs: options.attemptTimeoutMs,
    refusedRoundsMax: 0,
  });
}
