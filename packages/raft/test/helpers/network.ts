// A tiny in-memory cluster for the Raft unit tests: RawNodes over MemoryStorage, a message queue
// that the test delivers (all of it, or only what a predicate picks), and a Ready loop that follows
// the Ready contract of src/index.ts exactly: persist (snapshot, entries, hard state), then
// send, then apply, then advance. Nothing here is random except the injected, seeded Rng.
import {
  EntryType,
  Role,
  type Entry,
  type HardState,
  type Membership,
  type NodeId,
  type ReadState,
} from '../../src/types';
import { message, type Message } from '../../src/message';
import { RawNode, type Ready } from '../../src/raw-node';
import { SeededRng, type Rng } from '../../src/rng';
import { type RaftConfigInput } from '../../src/config';
import { jsonMembershipCodec, MemoryStorage } from '../../src/simulation';

/** Config fields a test may set; id, rng and codec are filled in by the network. */
export type TestConfig = Partial<Omit<RaftConfigInput, 'id' | 'rng' | 'membershipCodec'>>;

/** Small, explicit defaults so that tick counts in tests are easy to reason about. */
export const testConfigDefaults = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: false,
  checkQuorum: false,
} as const;

/** A membership of voters (and learners), with made-up addresses. */
export function members(voters: readonly NodeId[], learners: readonly NodeId[] = []): Membership {
  return [
    ...voters.map((id) => ({ id, address: `n${id}`, learner: false, incarnation: 0 })),
    ...learners.map((id) => ({ id, address: `n${id}`, learner: true, incarnation: 0 })),
  ].sort((a, b) => a.id - b.id);
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

/**
 * Storage bootstrapped with `membership` (snapshot 1/1) followed by entries at index 2, 3, ...
 * with the given terms, and a hard state at `term` (no vote, commit 1). Entries carry `dataBytes`
 * bytes of data each.
 */
export function storageWithLog(options: {
  membership: Membership;
  terms: readonly number[];
  term: number;
  dataBytes?: number;
}): MemoryStorage {
  const storage = MemoryStorage.bootstrap(options.membership);
  const entries: Entry[] = options.terms.map((term, i) => ({
    index: i + 2,
    term,
    type: EntryType.Normal,
    data: new Uint8Array(options.dataBytes ?? 1).fill(0x61 + (i % 26)),
  }));
  storage.append(entries);
  storage.setHardState({ term: options.term, vote: 0, commit: 1 });
  return storage;
}

/** An Rng that records every value it hands out (and the bound it was asked for). */
export class RecordingRng implements Rng {
  readonly draws: { bound: number; value: number }[] = [];
  private readonly inner: SeededRng;

  constructor(seed: number) {
    this.inner = new SeededRng(seed);
  }

  nextInt(bound: number): number {
    const value = this.inner.nextInt(bound);
    this.draws.push({ bound, value });
    return value;
  }
}

/** One Ready as the network handled it, with the durable state right after step 1 (persist). */
export interface ReadyRecord {
  readonly ready: Ready;
  /** The node's role when the Ready was taken. */
  readonly role: Role;
  /** The stored last index before the persist (where appended entries had to start). */
  readonly lastIndexBefore: number;
  readonly durableHardState: HardState;
  readonly durableLastIndex: number;
}

/** A message that left a node, with the sender's durable state at the moment it left. */
export interface SentRecord {
  readonly message: Message;
  readonly durableHardState: HardState;
  readonly durableLastIndex: number;
  /** The stored term at message.index (undefined when not stored). */
  readonly durableTermAtIndex: number | undefined;
}

export class TestPeer {
  readonly applied: Entry[] = [];
  readonly readStates: ReadState[] = [];
  readonly readies: ReadyRecord[] = [];

  constructor(
    readonly id: NodeId,
    readonly node: RawNode,
    readonly storage: MemoryStorage,
  ) {}
}

export interface NetworkOptions {
  /** The membership every peer is bootstrapped with (unless `storages` names its storage). */
  membership: Membership;
  /** The nodes to run; default: every member. Messages to other ids stay in the queue. */
  peers?: readonly NodeId[];
  config?: TestConfig;
  /** Per-node config overrides. */
  configs?: ReadonlyMap<NodeId, TestConfig>;
  /** Per-node storage (otherwise MemoryStorage.bootstrap(membership)). */
  storages?: ReadonlyMap<NodeId, MemoryStorage>;
  /** Per-node rng (otherwise a SeededRng derived from `seed` and the id). */
  rngs?: ReadonlyMap<NodeId, Rng>;
  seed?: number;
}

export class Network {
  readonly peers = new Map<NodeId, TestPeer>();
  /** Messages sent and not yet delivered or dropped, in the order they were sent. */
  queue: Message[] = [];
  /** Every message that left a node (for contract checks). */
  readonly sent: SentRecord[] = [];
  private readonly isolated = new Set<NodeId>();
  private readonly seed: number;
  private readonly config: TestConfig;

  constructor(private readonly options: NetworkOptions) {
    this.seed = options.seed ?? 1;
    this.config = { ...testConfigDefaults, ...options.config };
    const ids = options.peers ?? options.membership.map((m) => m.id);
    for (const id of ids) {
      this.addPeer(id, options.storages?.get(id) ?? MemoryStorage.bootstrap(options.membership));
    }
  }

  /** Starts a node over `storage` (a new member, or a restart from what was persisted). */
  addPeer(id: NodeId, storage: MemoryStorage, config: TestConfig = {}): TestPeer {
    const rng = this.options.rngs?.get(id) ?? new SeededRng(this.seed * 1000 + id);
    const node = new RawNode(
      {
        ...this.config,
        ...this.options.configs?.get(id),
        ...config,
        id,
        rng,
        membershipCodec: jsonMembershipCodec,
      },
      storage,
    );
    const peer = new TestPeer(id, node, storage);
    this.peers.set(id, peer);
    return peer;
  }

  peer(id: NodeId): TestPeer {
    const peer = this.peers.get(id);
    if (peer === undefined) throw new Error(`no peer ${id}`);
    return peer;
  }

  node(id: NodeId): RawNode {
    return this.peer(id).node;
  }

  /** Handles one Ready of `id` by the contract; returns it, or null when there was none. */
  handleReady(id: NodeId): Ready | null {
    const peer = this.peer(id);
    const node = peer.node;
    if (!node.hasReady()) return null;
    const role = node.basicStatus().role;
    const rd = node.ready();
    const storage = peer.storage;
    const lastIndexBefore = storage.lastIndex();
    // 1. Persist: snapshot, then entries (replacing the stored suffix), then the hard state.
    if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) storage.append(rd.entries);
    if (rd.hardState !== null) storage.setHardState(rd.hardState);
    peer.readies.push({
      ready: rd,
      role,
      lastIndexBefore,
      durableHardState: storage.hardState,
      durableLastIndex: storage.lastIndex(),
    });
    // 2. Send.
    for (const m of rd.messages) {
      this.sent.push({
        message: m,
        durableHardState: storage.hardState,
        durableLastIndex: storage.lastIndex(),
        durableTermAtIndex: storage.term(m.index),
      });
      this.queue.push(m);
    }
    // 3. Apply.
    peer.applied.push(...rd.committedEntries);
    peer.readStates.push(...rd.readStates);
    // 4. Advance.
    node.advance();
    return rd;
  }

  /** Handles every Ready of `id` (or of every peer) until none is left; returns them in order. */
  flush(id?: NodeId): Ready[] {
    const ids = id === undefined ? [...this.peers.keys()] : [id];
    const readies: Ready[] = [];
    for (let round = 0; round < 100; round++) {
      let any = false;
      for (const i of ids) {
        const rd = this.handleReady(i);
        if (rd !== null) {
          readies.push(rd);
          any = true;
        }
      }
      if (!any) return readies;
    }
    throw new Error('flush did not settle after 100 rounds');
  }

  /** Steps `m` into its target and handles the resulting Readies. */
  step(id: NodeId, m: Message): Ready[] {
    this.node(id).step(m);
    return this.flush(id);
  }

  /** Builds a message with zero values for unnamed fields and steps it into `to`. */
  inject(fields: Parameters<typeof message>[0]): Ready[] {
    return this.step(fields.to, message(fields));
  }

  tick(id: NodeId, count = 1): void {
    for (let i = 0; i < count; i++) {
      this.node(id).tick();
      this.flush(id);
    }
  }

  tickAll(count = 1): void {
    for (let i = 0; i < count; i++) {
      for (const id of this.peers.keys()) this.tick(id);
    }
  }

  /** Removes and returns the queued messages that match `pick` (without delivering them). */
  take(pick: (m: Message) => boolean = () => true): Message[] {
    const taken = this.queue.filter(pick);
    this.queue = this.queue.filter((m) => !pick(m));
    return taken;
  }

  /** Removes the queued messages that match `pick`. */
  drop(pick: (m: Message) => boolean = () => true): void {
    this.take(pick);
  }

  /** True when `m` can travel: both ends run here and neither is isolated. */
  private canDeliver(m: Message): boolean {
    return this.peers.has(m.to) && !this.isolated.has(m.to) && !this.isolated.has(m.from);
  }

  /**
   * Delivers the queued messages that match `pick`, in queue order, one pass: messages sent in
   * answer are queued behind and not delivered by this call. Messages that cannot travel are
   * dropped. Returns the messages actually delivered.
   */
  deliver(pick: (m: Message) => boolean = () => true): Message[] {
    const batch = this.take(pick);
    const delivered: Message[] = [];
    for (const m of batch) {
      if (!this.canDeliver(m)) continue;
      this.step(m.to, m);
      delivered.push(m);
    }
    return delivered;
  }

  /** Delivers until the queue is empty (or only holds messages `pick` rejects). */
  stabilize(pick: (m: Message) => boolean = () => true): Message[] {
    const delivered: Message[] = [];
    this.flush();
    for (let round = 0; round < 1000; round++) {
      if (!this.queue.some(pick)) return delivered;
      delivered.push(...this.deliver(pick));
      this.flush();
    }
    throw new Error('the network did not stabilize after 1000 rounds');
  }

  /** Cuts `id` off: messages from and to it are dropped on delivery. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  heal(): void {
    this.isolated.clear();
  }

  /** Makes `id` campaign and delivers everything; asserts that it won. */
  elect(id: NodeId): void {
    this.node(id).campaign();
    this.stabilize();
    const status = this.node(id).basicStatus();
    if (status.role !== Role.Leader) {
      throw new Error(`node ${id} did not win the election: ${status.role} in ${status.term}`);
    }
  }

  /** Proposes `data` at `id` (which must lead) and returns the new entry's index. */
  propose(id: NodeId, data: string): number {
    const result = this.node(id).propose([bytes(data)]);
    if (!result.ok) throw new Error(`proposal at ${id} refused: ${result.refusal}`);
    this.flush(id);
    return result.index;
  }

  /** The terms of the entries stored at `id` after its snapshot, in index order. */
  storedTerms(id: NodeId): number[] {
    return this.peer(id)
      .storage.allEntries()
      .map((e) => e.term);
  }
}
