// Asking peers who they are (the Identify RPC), and what a node does with the answers:
//   - bootstrap discovery: a new data dir with --peers learns every member's incarnation before it
//     bootstraps the group, or finds that the group exists and joins it (or is refused);
//   - the check before a member is added: the new node must answer, as the incarnation it is;
//   - RaftServerBoot: what answers for a node while RaftServer.open() builds it (Identify with
//     bootstrapping set, health, a stop that gives the wait up), then forwards to the open server.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, type IdentifyReq, type IdentifyResp } from '@eraftkv/protocol';
import type { Membership, NodeId } from '@eraftkv/raft';
import { InvalidArgumentError, RejectedError, StoppedError } from './errors';
import type { HealthReport } from './http-endpoint';
import { ThrottledLog, type Logger } from './logger';
import { DataDirError } from './node-identity';
import type { ResolvedRaftServerOptions } from './raft-server-options';
import {
  checkPeerNumber,
  membershipFromWire,
  membershipToWire,
  type PeerAnswer,
  type PeerIdentity,
  type PeerInbox,
  type PeerInput,
  PeerRefusal,
  type PeerTransport,
} from './transport';

/**
 * A node with a new data dir and --peers found that the group already exists and knows this node
 * as another incarnation (the data dir was wiped), or without this node at all.
 */
export class BootstrapRefusedError extends DataDirError {
  override name = 'BootstrapRefusedError';
}

/** How long a node being added may take to answer who it is (it may be starting). */
const newNodeWaitMs = 3000;

/** What asking peers needs of the options. */
type AskOptions = Pick<
  ResolvedRaftServerOptions<unknown>,
  'id' | 'groupId' | 'clusterId' | 'incarnation' | 'controlTimeoutMs'
>;

/**
 * Asks node `id` at `address` who it is. Returns its answer, or why it did not answer (it may
 * not be up yet). A node that refuses on principle (another cluster, group or id at that
 * address) is a configuration error named after `flag`.
 */
export async function askIdentity(
  transport: PeerTransport,
  o: AskOptions,
  id: NodeId,
  address: string,
  flag: string,
): Promise<IdentifyResp | string> {
  try {
    const answer = await transport.identify(
      id,
      address,
      {
        groupId: o.groupId,
        clusterId: o.clusterId,
        toId: id,
        fromId: o.id,
        fromIncarnation: o.incarnation,
      },
      o.controlTimeoutMs,
    );
    checkPeerNumber(answer.incarnation, `incarnation of node ${id}`, 1);
    return answer;
  } catch (err) {
    if (err instanceof InvalidArgumentError) return `it answered: ${err.message}`;
    const e = err as Partial<{ code: number; details: string; message: string }>;
    if (e.code === grpc.status.FAILED_PRECONDITION) {
      throw new DataDirError(`${flag}: node ${id} at ${address} refused: ${e.details ?? ''}`);
    }
    return e.details ?? e.message ?? String(err);
  }
}

/**
 * Asks a node about to be added who it is, for the incarnation the membership records. A node
 * that was just started may not listen yet: it is asked again for a few seconds before the
 * change is refused.
 */
export async function incarnationOfNewNode(
  transport: PeerTransport,
  o: AskOptions,
  nodeId: NodeId,
  address: string,
  stopping: () => boolean,
): Promise<number> {
  const deadline = Date.now() + newNodeWaitMs;
  const ask = (): Promise<IdentifyResp | string> =>
    askIdentity(transport, o, nodeId, address, 'member add').catch((err: unknown) => {
      // Another cluster, group or node id answers at that address.
      throw new RejectedError(ErrorCode.REJECTED, (err as Error).message);
    });
  let answer = await ask();
  while (typeof answer === 'string' && Date.now() < deadline && !stopping()) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    answer = await ask();
  }
  if (typeof answer === 'string') {
    throw new RejectedError(
      ErrorCode.REJECTED,
      `cannot ask node ${nodeId} at ${address} who it is (${answer}): start it first, with an empty --peers, then add it`,
    );
  }
  if (answer.bootstrapping) {
    throw new RejectedError(
      ErrorCode.REJECTED,
      `node ${nodeId} at ${address} is waiting to bootstrap a new group with its --peers: restart it with an empty --peers to add it to this group`,
    );
  }
  return answer.incarnation;
}

/**
 * Before a new data dir bootstraps a group from --peers, every other peer is asked who it is
 * (Identify) until all have answered, so that the first membership records each member's
 * incarnation, the same on every member. If a peer already belongs to the group, the group
 * exists: this node must not bootstrap it again. If the group knows this node as this very
 * incarnation (this node crashed after answering and before bootstrapping), it joins empty and
 * the leader brings it up to date; if the group knows it as another incarnation, this data dir
 * was created anew (the node lost its data) and start-up is refused with what to do about it.
 * Returns the membership to bootstrap with, or null to join the existing group.
 */
export async function discoverBootstrap(
  transport: PeerTransport,
  o: ResolvedRaftServerOptions<unknown>,
  peers: Membership,
): Promise<Membership | null> {
  const others = peers.filter((p) => p.id !== o.id);
  const answers = new Map<NodeId, IdentifyResp>();
  const waitingFor = new Map<NodeId, string>();
  o.boot.discovering = true;
  const started = Date.now();
  let reported = started;
  try {
    for (;;) {
      if (o.boot.stopRequested) {
        throw new StoppedError('the raft server stopped while bootstrapping');
      }
      await Promise.all(
        others
          .filter((p) => !answers.has(p.id))
          .map(async (p) => {
            const answer = await askIdentity(transport, o, p.id, p.address, '--peers');
            if (typeof answer === 'string') waitingFor.set(p.id, answer);
            else {
              waitingFor.delete(p.id);
              answers.set(p.id, answer);
            }
          }),
      );
      for (const [id, answer] of answers) {
        const membership = membershipFromWire(answer.membership, `node ${id}'s membership`);
        if (membership.length > 0) {
          const first = membershipFromWire(
            answer.bootstrapMembership,
            `node ${id}'s bootstrap membership`,
          );
          return joinExistingGroup(o, id, membership, first);
        }
        if (!answer.bootstrapping) {
          answers.delete(id);
          waitingFor.set(
            id,
            'it was started with an empty --peers (to join an existing group), not to bootstrap this one',
          );
        }
      }
      if (answers.size === others.length) {
        const incarnation = (id: NodeId): number =>
          id === o.id ? o.incarnation : (answers.get(id)?.incarnation ?? 0);
        return peers.map((p) => ({ ...p, incarnation: incarnation(p.id) }));
      }
      if (Date.now() - reported >= 5000) {
        reported = Date.now();
        o.logger.warn('waiting for every --peers member to answer before bootstrapping', {
          waitingMs: reported - started,
          waitingFor: [...waitingFor].map(([id, why]) => `${id}: ${why}`).join('; '),
        });
      }
      await new Promise((resolve) => setTimeout(resolve, o.bootstrapRetryMs));
    }
  } finally {
    o.boot.discovering = false;
  }
}

/**
 * The group exists (node `from` belongs to it with `membership`). Returns the membership to
 * bootstrap with when `first`, the one the group was bootstrapped with, already counts this
 * very data dir (the peers answered before this node bootstrapped itself), or null to join
 * empty and be brought up to date by the leader.
 */
function joinExistingGroup(
  o: ResolvedRaftServerOptions<unknown>,
  from: NodeId,
  membership: Membership,
  first: Membership,
): Membership | null {
  const members = membership.map((m) => `${m.id}`).join(',');
  const self = membership.find((m) => m.id === o.id);
  const group = `group ${o.groupId}`;
  if (self === undefined) {
    throw new BootstrapRefusedError(
      `${group} already exists (node ${from} has members ${members}) and node ${o.id} is not one of them: ` +
        `a running group is never bootstrapped again. To add this node, start it with an empty --peers ` +
        `and run: eraftkv-ctl member add --group ${o.groupId} ${o.id} <its address> --learner`,
    );
  }
  if (self.incarnation !== o.incarnation) {
    throw new BootstrapRefusedError(
      `${group} already has a node ${o.id}, incarnation ${self.incarnation} (says node ${from}), but data dir ${o.dataDir} ` +
        `was created anew as incarnation ${o.incarnation}: this node lost its data, and it must not be counted as the member it was. ` +
        `Remove it and add it again: eraftkv-ctl member remove --group ${o.groupId} ${o.id}; then start it with an empty --peers; ` +
        `then eraftkv-ctl member add --group ${o.groupId} ${o.id} ${self.address} --learner`,
    );
  }
  const firstSelf = first.find((m) => m.id === o.id);
  if (firstSelf !== undefined && firstSelf.incarnation === o.incarnation) {
    return first;
  }
  o.logger.info('the group already exists and counts this data dir as a member: joining', {
    from,
    members,
  });
  return null;
}

/** The answer to Identify: who this node is, and the memberships it knows (empty when none). */
export function identityAnswer(
  id: NodeId,
  identity: PeerIdentity,
  known: {
    readonly bootstrapping: boolean;
    readonly membership: Membership;
    readonly bootstrapMembership: Membership;
  },
): IdentifyResp {
  return {
    nodeId: id,
    groupId: identity.groupId,
    clusterId: identity.clusterId,
    incarnation: identity.incarnation,
    bootstrapping: known.bootstrapping,
    membership: membershipToWire(known.membership),
    bootstrapMembership: membershipToWire(known.bootstrapMembership),
  };
}

/** What RaftServerBoot forwards to once the server is open. */
export interface OpenNode extends PeerInbox {
  health(): HealthReport;
  stop(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Answers for a node while RaftServer.open() builds it, and forwards to the server once it is
 * open. Before then: Identify is answered with who this node is and whether it waits for its
 * --peers (bootstrapping), every other request is refused as not started, health says why, and a
 * stop during bootstrap discovery makes open() give up (StoppedError).
 */
export class RaftServerBoot implements PeerInbox {
  /** Waiting for the --peers members to answer before bootstrapping (see discoverBootstrap). */
  discovering = false;
  /** Set when a peer addressed another incarnation of this node (the open server starts with it). */
  notThisIncarnation: string | null = null;
  private stopping = false;
  private self: { readonly id: NodeId; readonly identity: PeerIdentity } | null = null;
  private warnings: ThrottledLog | null = null;
  private server: OpenNode | null = null;

  /** open() starts with the node's identity. */
  begin(id: NodeId, identity: PeerIdentity, logger: Logger): void {
    this.self = { id, identity };
    this.warnings = new ThrottledLog(logger);
    this.server = null;
  }

  /** open() finished: from now on everything goes to `server`. */
  opened(server: OpenNode): void {
    this.server = server;
  }

  /** A stop was asked for before the server was open. */
  get stopRequested(): boolean {
    return this.stopping;
  }

  private known(): { readonly id: NodeId; readonly identity: PeerIdentity } {
    if (this.self === null) throw new Error('the node is not started yet');
    return this.self;
  }

  get selfId(): NodeId {
    return this.known().id;
  }

  get identity(): PeerIdentity {
    return this.known().identity;
  }

  receive<I extends PeerInput>(input: I): Promise<PeerAnswer<I>> {
    if (this.server !== null) return this.server.receive(input);
    return Promise.reject(new StoppedError('the raft server is not started'));
  }

  identify(req: IdentifyReq): IdentifyResp {
    if (this.server !== null) return this.server.identify(req);
    const self = this.known();
    return identityAnswer(self.id, self.identity, {
      bootstrapping: this.discovering,
      membership: [],
      bootstrapMembership: [],
    });
  }

  incarnationOf(id: NodeId): number | undefined {
    return this.server?.incarnationOf(id);
  }

  refused(reason: PeerRefusal, from: NodeId, detail: string): void {
    if (this.server !== null) {
      this.server.refused(reason, from, detail);
      return;
    }
    if (reason === PeerRefusal.ReceiverIncarnation) this.notThisIncarnation = detail;
    this.warnings?.warn(`refused-${reason}-${from}`, 'refused a peer request', {
      from,
      reason,
      detail,
    });
  }

  health(): HealthReport {
    if (this.server !== null) return this.server.health();
    if (this.discovering) {
      return {
        healthy: false,
        reason: 'bootstrapping: waiting for every --peers member to answer',
      };
    }
    return { healthy: false, reason: 'not running' };
  }

  /** Stops the open server, or makes bootstrap discovery give up. */
  async stop(): Promise<void> {
    if (this.server !== null) return this.server.stop();
    this.stopping = true;
  }

  async abort(): Promise<void> {
    if (this.server !== null) return this.server.abort();
    this.stopping = true;
  }
}
