// A seeded simulation of a Raft group in one process (TigerBeetle's VOPR, in spirit): the real
// core, an in-memory disk, and a network that drops, duplicates, reorders and delays messages and
// makes (asymmetric) partitions; nodes crash and lose everything not persisted through Ready,
// then restart; clients propose; members come and go; leadership is transferred; logs are
// compacted so that snapshots must be sent; a node loses its whole disk (amnesia) and restarts as
// a new incarnation, which the network refuses to count as the member it was (as the runtime's
// peers do) until it has been removed and added again. The SafetyChecker watches after every
// step. Then the faults heal, and within a bounded number of ticks a leader must exist and a
// proposal commit.
//
// Everything random comes from one seed, so a seed replays exactly the same run (same trace).
import { describeMessage, describeReady } from '../describe';
import {
  EntryType,
  RaftInvariantError,
  Role,
  type Entry,
  type Member,
  type NodeId,
} from '../types';
import { isResponse, mayBeSentBeforePersist, MessageType, type Message } from '../message';
import { MembershipChangeKind, Raft } from '../raft';
import { RawNode, type Ready } from '../raw-node';
import { SeededRng } from '../rng';
import { type LogStorage } from '../storage';
import { type RaftConfig } from '../config';
import { entryKey, SafetyChecker, SafetyViolation } from './checker';
import { MemoryStorage } from './memory-storage';
import { jsonMembershipCodec } from './membership-codec';

export interface FaultRates {
  /** Probability that a message is lost. */
  readonly drop: number;
  /** Probability that a message is delivered twice. */
  readonly duplicate: number;
  /** Messages take 1..delayStepsMax steps (reordering follows from unequal delays). */
  readonly delayStepsMax: number;
  /** Per step: probability of a new partition (when none is active). */
  readonly partition: number;
  /** Per step: probability that an active partition heals. */
  readonly partitionHeal: number;
  /** Per step: probability that a random node crashes. */
  readonly crash: number;
  /** Per step: probability that the leader crashes. */
  readonly crashLeader: number;
  /**
   * Probability that a newly elected leader is cut off at once, for a while: it appends entries
   * that no one else gets, the raw material of the Raft paper's figure 8.
   */
  readonly isolateNewLeader: number;
  /** Per step: probability that a crashed node restarts. */
  readonly restart: number;
  /** Per Ready: probability of crashing midway (after the leader's early sends, before persist). */
  readonly crashInReady: number;
  /** Per step: probability of a client proposal. */
  readonly propose: number;
  /** Per step: probability of a membership change (when churn is on). */
  readonly membershipChange: number;
  /** Per step: probability of a leadership transfer request. */
  readonly transfer: number;
  /** Per step: probability that a node compacts its log at its applied index. */
  readonly compact: number;
  /** Per step: probability that a node's older entries become temporarily unavailable. */
  readonly evict: number;
  /** Per step: probability of a linearizable read request. */
  readonly read: number;
  /**
   * Per step (with churn): probability that a node loses its whole disk and restarts empty, as a
   * new incarnation; it is removed and added again by the membership changes that follow.
   */
  readonly amnesia: number;
}

export const defaultFaultRates: FaultRates = {
  drop: 0.05,
  duplicate: 0.02,
  delayStepsMax: 12,
  partition: 0.004,
  partitionHeal: 0.01,
  crash: 0.002,
  crashLeader: 0.001,
  isolateNewLeader: 0.05,
  restart: 0.02,
  crashInReady: 0.002,
  propose: 0.15,
  membershipChange: 0.004,
  transfer: 0.002,
  compact: 0.01,
  evict: 0.005,
  read: 0.05,
  amnesia: 0.0005,
};

/** The largest term the simulated nodes may reach: what the runtime's log store holds. */
export const simulatedTermMax = 2 ** 48 - 1;

export interface SimulationOptions {
  readonly seed: number;
  /** Initial voters: 3, 5 or 7. */
  readonly nodes: number;
  /**
   * The term the group starts at (default 1). Near termMax it checks that nothing in the core
   * loses precision or misbehaves at the largest terms storage holds.
   */
  readonly firstTerm?: number;
  /** Ticks of the fault phase. */
  readonly ticks: number;
  /** After healing, ticks within which a leader must exist and a proposal commit. */
  readonly healTicksMax: number;
  readonly stepsPerTick: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly faults: FaultRates;
  /** Data bytes per Append: small values make catching up take many messages. */
  readonly appendBytesMax: number;
  /** Add and remove members while the faults run. */
  readonly churn: boolean;
  /**
   * Deliver a message only between the incarnations the sender's and receiver's memberships
   * record, as the runtime's peers do (default true). Off, a node that lost its disk is counted
   * as the member it was: the broken-variant test proves the checkers catch it.
   */
  readonly checkIncarnations?: boolean;
  /**
   * With checkIncarnations, also refuse a vote asked by another incarnation of a member than the
   * voter's membership records, as the runtime's peers do (default true). Off, a node that lost
   * its disk and learned an old configuration from a snapshot can be elected as the member it
   * was: the broken-variant test proves the checkers catch it.
   */
  readonly checkCandidateIncarnations?: boolean;
  /** A different Raft for every node (tests prove the checkers with deliberately broken ones). */
  readonly createRaft?: (config: RaftConfig, storage: LogStorage) => Raft;
  /** Receives every trace line (for --trace). */
  readonly trace?: (line: string) => void;
  /** Hash the whole trace into the result (implied by `trace`); costs time, off by default. */
  readonly hashTrace?: boolean;
}

export const defaultSimulationOptions: Omit<SimulationOptions, 'seed'> = {
  nodes: 3,
  ticks: 1500,
  healTicksMax: 400,
  stepsPerTick: 5,
  electionTicks: 10,
  heartbeatTicks: 2,
  faults: defaultFaultRates,
  appendBytesMax: 64,
  churn: true,
};

/**
 * Fault profiles. `standard` is a long run with every kind of fault, membership churn and
 * compaction. `leader-storm` is a short run that keeps cutting off and crashing leaders right
 * after they win, with tiny appends so that catching up takes many messages: the conditions of
 * the Raft paper's figure 8, which the standard mix reaches only rarely.
 */
export const simulationProfiles = {
  standard: defaultSimulationOptions,
  'leader-storm': {
    ...defaultSimulationOptions,
    ticks: 300,
    appendBytesMax: 6,
    churn: false,
    faults: {
      ...defaultFaultRates,
      delayStepsMax: 4,
      propose: 0.4,
      isolateNewLeader: 0.6,
      crashLeader: 0.03,
      restart: 0.2,
      partition: 0.02,
      partitionHeal: 0.05,
    },
  },
} as const satisfies Record<string, Omit<SimulationOptions, 'seed'>>;

export type SimulationProfile = keyof typeof simulationProfiles | 'mixed';

/** The options for one seed: `mixed` runs every other seed with the leader-storm profile. */
export function simulationOptionsFor(
  seed: number,
  nodes: number,
  profile: SimulationProfile = 'mixed',
): SimulationOptions {
  const name = profile === 'mixed' ? (seed % 2 === 0 ? 'leader-storm' : 'standard') : profile;
  return { ...simulationProfiles[name], seed, nodes };
}

export interface SimulationResult {
  readonly seed: number;
  readonly nodes: number;
  readonly ticks: number;
  /** The first violation found, or null. */
  readonly violation: string | null;
  /** FNV-1a hash of the whole trace: equal for equal runs ('' unless hashTrace or trace). */
  readonly traceHash: string;
  readonly steps: number;
  readonly committedIndex: number;
  readonly leaderChanges: number;
  readonly snapshotsInstalled: number;
  readonly messagesDelivered: number;
  readonly membershipChanges: number;
  readonly readsServed: number;
  /** Nodes that lost their whole disk (amnesia). */
  readonly disksLost: number;
}

interface InFlight {
  readonly deliverAt: number;
  readonly seq: number;
  readonly message: Message;
  /** The sender's incarnation, and the receiver's as the sender's membership records it. */
  readonly fromIncarnation: number;
  readonly toIncarnation: number | undefined;
  /** The sender's snapshot data travelling with a Snapshot message. */
  readonly snapshotData: readonly string[] | null;
}

/** The durable part of a simulated node: its disk and its state machine. */
interface SimDisk {
  readonly storage: MemoryStorage;
  /** The state machine: applied[i] is the key of the entry applied at index i + 1. */
  applied: string[];
  /** Snapshots this node can send, by index: the state machine content up to that index. */
  readonly snapshots: Map<number, readonly string[]>;
}

interface SimNode {
  readonly id: NodeId;
  readonly address: string;
  /** Replaced whole when the node loses its disk (amnesia). */
  disk: SimDisk;
  node: RawNode | null;
  /** Snapshot data received from the leader, waiting for Ready.snapshot, by "index/term". */
  readonly incomingSnapshots: Map<string, readonly string[]>;
  lastRole: Role;
  lastTerm: number;
  /** Which disk this is: a new one (after amnesia) is a new incarnation. */
  incarnation: number;
  /** Lost its disk and has not been added back as its new incarnation yet. */
  lostDisk: boolean;
}

const fnvOffset = 0xcbf29ce484222325n;
const fnvPrime = 0x100000001b3n;
const mask64 = (1n << 64n) - 1n;

class TraceHash {
  private hash = fnvOffset;
  update(line: string): void {
    let h = this.hash;
    for (let i = 0; i < line.length; i++) {
      h ^= BigInt(line.charCodeAt(i) & 0xff);
      h = (h * fnvPrime) & mask64;
    }
    this.hash = h;
  }
  hex(): string {
    return this.hash.toString(16).padStart(16, '0');
  }
}

export class Simulation {
  readonly options: SimulationOptions;
  private readonly rng: SeededRng;
  private readonly checker = new SafetyChecker();
  private readonly nodes = new Map<NodeId, SimNode>();
  private network: InFlight[] = [];
  private messageSeq = 0;
  private step = 0;
  private nextNodeId: NodeId;
  /** New incarnations (disks created after amnesia) are numbered from here. */
  private nextIncarnation = 1_000_000;
  private proposalSeq = 0;
  private readSeq = 0;
  /** Pairs (from -> to) that cannot talk: a partition, possibly asymmetric. */
  private blocked = new Set<string>();
  /** Nodes cut off from everyone until the given step. */
  private readonly isolatedUntil = new Map<NodeId, number>();
  private faultsOn = true;
  private readonly traceHash = new TraceHash();
  private readonly pendingSnapshotReports: { at: number; from: NodeId; to: NodeId; ok: boolean }[] =
    [];
  /** Outstanding reads: request id -> the committed index when the read was requested. */
  private readonly pendingReads = new Map<number, { node: NodeId; committedAtStart: number }>();
  private stats = {
    leaderChanges: 0,
    snapshotsInstalled: 0,
    messagesDelivered: 0,
    membershipChanges: 0,
    readsServed: 0,
    disksLost: 0,
  };

  constructor(options: SimulationOptions) {
    this.options = options;
    this.tracing = options.trace !== undefined || options.hashTrace === true;
    this.rng = new SeededRng(options.seed);
    const members: Member[] = [];
    for (let id = 1; id <= options.nodes; id++) {
      members.push({ id, address: `sim-${id}`, learner: false, incarnation: id });
    }
    for (const m of members) {
      this.addNode(m.id, MemoryStorage.bootstrap(members, options.firstTerm ?? 1), [
        `1:${EntryType.NoOp}:bootstrap`,
      ]);
    }
    this.nextNodeId = options.nodes + 1;
  }

  private readonly tracing: boolean;

  /** Records a trace line; the line is only built when tracing is on. */
  private trace(line: () => string): void {
    if (!this.tracing) return;
    const stamped = `${this.step} ${line()}`;
    this.traceHash.update(stamped);
    this.options.trace?.(stamped);
  }

  private addNode(id: NodeId, storage: MemoryStorage, applied: string[]): SimNode {
    const disk: SimDisk = { storage, applied, snapshots: new Map() };
    const snapshot = storage.currentSnapshot();
    disk.snapshots.set(snapshot.index, applied.slice(0, snapshot.index));
    const sim: SimNode = {
      id,
      address: `sim-${id}`,
      disk,
      node: null,
      incomingSnapshots: new Map(),
      lastRole: Role.Follower,
      lastTerm: 0,
      incarnation: id,
      lostDisk: false,
    };
    this.nodes.set(id, sim);
    this.start(sim);
    return sim;
  }

  private start(sim: SimNode): void {
    const o = this.options;
    sim.node = new RawNode(
      {
        id: sim.id,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        // Small windows and messages so that pipelining, flow control and batching all happen.
        appendBytesMax: o.appendBytesMax,
        inflightAppendsMax: 4,
        inflightBytesMax: 256,
        uncommittedBytesMax: 4096,
        committedEntriesPerReadyBytesMax: 128,
        learnerCatchUpEntriesMax: 5,
        // What the runtime's log store holds.
        termMax: simulatedTermMax,
        applied: sim.disk.applied.length,
        rng: new SeededRng(this.rng.nextUint32()),
        membershipCodec: jsonMembershipCodec,
      },
      sim.disk.storage,
      o.createRaft,
    );
    sim.incomingSnapshots.clear();
    sim.lastRole = Role.Follower;
    sim.lastTerm = sim.disk.storage.hardState.term;
    this.trace(() => `start ${sim.id} applied=${sim.disk.applied.length}`);
  }

  private crash(sim: SimNode): void {
    sim.node = null;
    this.trace(() => `crash ${sim.id}`);
  }

  /** Runs the whole simulation and reports the first violation (or none). */
  run(): SimulationResult {
    let violation: string | null = null;
    try {
      const o = this.options;
      for (let t = 0; t < o.ticks; t++) this.runTick();
      this.heal();
      this.checkLiveness();
    } catch (err) {
      if (err instanceof SafetyViolation || err instanceof RaftInvariantError) {
        violation = `${err.name}: ${err.message}`;
      } else {
        violation = `crash: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
      }
      this.trace(() => `VIOLATION ${violation}`);
      this.trace(() => this.describeNodes());
    }
    return {
      seed: this.options.seed,
      nodes: this.options.nodes,
      ticks: this.options.ticks,
      violation,
      traceHash: this.tracing ? this.traceHash.hex() : '',
      steps: this.step,
      committedIndex: this.checker.committedIndexMax(),
      ...this.stats,
    };
  }

  /** Every node's state, for the trace of a failed run. */
  private describeNodes(): string {
    const lines: string[] = ['nodes:'];
    for (const sim of this.nodes.values()) {
      const storage = sim.disk.storage;
      const terms: string[] = [];
      for (
        let i = Math.max(storage.firstIndex(), storage.lastIndex() - 15);
        i <= storage.lastIndex();
        i++
      ) {
        terms.push(`${i}:${storage.term(i)}`);
      }
      const st = sim.node?.status();
      lines.push(
        `  node ${sim.id} ${st ? `${st.role} term=${st.term} lead=${st.leader} commit=${st.commit}` : 'down'}` +
          ` hard=${JSON.stringify(storage.hardState)} applied=${sim.disk.applied.length}` +
          ` snap=${storage.currentSnapshot().index}/${storage.currentSnapshot().term}` +
          ` members=${st ? st.membership.map((m) => `${m.id}${m.learner ? 'L' : ''}`).join(',') : '?'}` +
          ` log=[${terms.join(' ')}]`,
      );
    }
    return lines.join('\n');
  }

  private runTick(): void {
    for (let s = 0; s < this.options.stepsPerTick; s++) {
      this.runStep(s === 0);
    }
  }

  private runStep(tick: boolean): void {
    this.step++;
    if (this.faultsOn) this.injectEvents();
    this.deliverDue();
    this.deliverSnapshotReports();
    if (tick) {
      for (const sim of this.liveNodes()) {
        sim.node?.tick();
        this.observeRole(sim);
        this.maybeSendEarly(sim);
      }
    }
    this.processReadies();
  }

  private liveNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.node !== null);
  }

  private leader(): SimNode | undefined {
    // The leader with the highest term among live nodes.
    let best: SimNode | undefined;
    for (const sim of this.liveNodes()) {
      const st = sim.node!.basicStatus();
      if (st.role !== Role.Leader) continue;
      if (best === undefined || st.term > best.node!.basicStatus().term) best = sim;
    }
    return best;
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.rng.nextInt(items.length)];
  }

  // -------------------------------------------------------------------------------------------
  // Faults and client activity
  // -------------------------------------------------------------------------------------------

  private injectEvents(): void {
    const f = this.options.faults;
    const rng = this.rng;
    const all = [...this.nodes.values()];
    if (rng.chance(f.crash)) {
      const victim = this.pick(this.liveNodes());
      // Keep a majority of the initial size alive most of the time: the point is to test
      // recovery, not to sit without quorum.
      if (victim && this.liveNodes().length > Math.ceil(this.options.nodes / 2)) this.crash(victim);
    }
    if (rng.chance(f.crashLeader)) {
      const victim = this.leader();
      if (victim && this.liveNodes().length > Math.ceil(this.options.nodes / 2)) this.crash(victim);
    }
    if (rng.chance(f.restart)) {
      const down = this.pick(all.filter((n) => n.node === null));
      if (down) this.start(down);
    }
    if (this.blocked.size === 0 && rng.chance(f.partition)) this.makePartition(all);
    else if (this.blocked.size > 0 && rng.chance(f.partitionHeal)) {
      this.blocked.clear();
      this.trace(() => 'partition healed');
    }
    if (rng.chance(f.propose)) this.proposeAt(this.pick(this.liveNodes()));
    if (rng.chance(f.read)) this.readAt(this.pick(this.liveNodes()));
    if (this.options.churn && rng.chance(f.membershipChange)) this.changeMembership();
    if (this.options.churn && f.amnesia > 0 && rng.chance(f.amnesia)) {
      // One member at a time, and only while at least three voters keep a majority with data:
      // a group that loses the disks of half its voters cannot recover by itself, here or in
      // the runtime. The leader's membership counts only once everything it appended is
      // committed: an appended change (a promotion, say) may be lost with the disk.
      const leader = this.leader()?.node ?? null;
      const settled = leader !== null && leader.status().commit === leader.status().lastIndex;
      const members = settled ? leader.membership() : [];
      const voters = members.filter((m) => !m.learner).length;
      if (voters >= 3 && ![...this.nodes.values()].some((n) => n.lostDisk)) {
        this.loseDisk(this.nodes.get(this.pick(members)?.id ?? 0));
      }
    }
    if (rng.chance(f.transfer)) this.requestTransfer();
    if (rng.chance(f.compact)) {
      const sim = this.pick(this.liveNodes());
      if (sim) this.compact(sim);
    }
    if (rng.chance(f.evict)) {
      const sim = this.pick(this.liveNodes());
      if (sim) {
        const storage = sim.disk.storage;
        storage.unavailableBelow =
          storage.firstIndex() + rng.nextInt(storage.lastIndex() - storage.firstIndex() + 2);
        this.trace(() => `evict ${sim.id} below ${storage.unavailableBelow}`);
      }
    }
    // Evicted entries come back (the runtime finished loading them).
    for (const sim of this.liveNodes()) {
      if (sim.disk.storage.unavailableBelow > 0 && rng.chance(0.05)) {
        sim.disk.storage.unavailableBelow = 0;
      }
    }
  }

  private makePartition(all: SimNode[]): void {
    const rng = this.rng;
    const ids = all.map((n) => n.id);
    const kind = rng.nextInt(4);
    const side = new Set<NodeId>();
    switch (kind) {
      case 0: {
        // Isolate the leader (or a random node).
        const victim = this.leader()?.id ?? this.pick(ids);
        if (victim !== undefined) side.add(victim);
        break;
      }
      case 1:
      case 2:
        // A random split into two sides (majority/minority or even).
        for (const id of ids) if (rng.chance(0.5)) side.add(id);
        break;
      default: {
        // A bridge: two halves that only one node can reach both of.
        const bridge = this.pick(ids);
        for (const id of ids) if (id !== bridge && rng.chance(0.5)) side.add(id);
        for (const a of ids) {
          for (const b of ids) {
            if (a === b || a === bridge || b === bridge) continue;
            if (side.has(a) !== side.has(b)) this.blocked.add(`${a}->${b}`);
          }
        }
        this.trace(() => `partition bridge=${bridge} side={${[...side].join(',')}}`);
        return;
      }
    }
    const asymmetric = rng.chance(0.3);
    for (const a of ids) {
      for (const b of ids) {
        if (side.has(a) && !side.has(b)) {
          this.blocked.add(`${a}->${b}`);
          if (!asymmetric) this.blocked.add(`${b}->${a}`);
        }
      }
    }
    this.trace(() => `partition side={${[...side].join(',')}}${asymmetric ? ' one-way' : ''}`);
  }

  private proposeAt(sim: SimNode | undefined): void {
    if (!sim?.node) return;
    const count = 1 + this.rng.nextInt(3);
    const datas: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      datas.push(new TextEncoder().encode(`p${++this.proposalSeq}`));
    }
    const result = sim.node.propose(datas);
    this.observeRole(sim);
    this.maybeSendEarly(sim);
    this.trace(
      () =>
        `propose at ${sim.id} x${count}: ${result.ok ? `index ${result.index}` : result.refusal}`,
    );
  }

  private readAt(sim: SimNode | undefined): void {
    if (!sim?.node) return;
    const id = ++this.readSeq;
    const result = sim.node.readIndex(id);
    if (result.ok) {
      this.pendingReads.set(id, {
        node: sim.id,
        committedAtStart: this.checker.committedIndexMax(),
      });
    }
    this.trace(() => `read #${id} at ${sim.id}: ${result.ok ? 'accepted' : result.refusal}`);
  }

  /**
   * Amnesia: the node's whole disk is gone (log, hard state, snapshots, applied state); it
   * restarts empty, as a new incarnation that waits to be added. With incarnation checks the group
   * never counts it as the member it was; repairLostDisk removes it and adds it back.
   */
  private loseDisk(sim: SimNode | undefined): void {
    if (sim === undefined) return;
    sim.node = null;
    sim.disk = {
      storage: new MemoryStorage({ index: 0, term: 0, membership: [] }),
      applied: [],
      snapshots: new Map(),
    };
    sim.incarnation = this.nextIncarnation++;
    sim.lostDisk = true;
    this.stats.disksLost++;
    this.trace(() => `amnesia ${sim.id}: new incarnation ${sim.incarnation}`);
    this.start(sim);
  }

  /**
   * The operator's path for a node that lost its disk: remove it while the group still records
   * its old incarnation, then add it as its new one. Returns true if it proposed a change.
   */
  private repairLostDisk(leader: SimNode): boolean {
    const node = leader.node;
    if (node === null) return false;
    for (const sim of this.nodes.values()) {
      if (!sim.lostDisk) continue;
      const member = node.membership().find((m) => m.id === sim.id);
      if (member !== undefined && member.incarnation === sim.incarnation) {
        sim.lostDisk = false;
        continue;
      }
      if (sim.id === leader.id) continue;
      const kind =
        member === undefined ? MembershipChangeKind.AddLearner : MembershipChangeKind.Remove;
      const result = node.proposeMembershipChange(kind, {
        nodeId: sim.id,
        address: sim.address,
        incarnation: member === undefined ? sim.incarnation : 0,
      });
      this.trace(
        () =>
          `repair ${sim.id} (${kind}) at ${leader.id}: ${result.ok ? `index ${result.index}` : result.refusal}`,
      );
      if (result.ok) this.stats.membershipChanges++;
      return true;
    }
    return false;
  }

  private changeMembership(): void {
    const leader = this.leader();
    if (!leader?.node) return;
    // Nothing else changes until a node that lost its disk is a member again.
    this.repairLostDisk(leader);
    if ([...this.nodes.values()].some((n) => n.lostDisk)) return;
    const membership = leader.node.status().membership;
    const voters = membership.filter((m) => !m.learner);
    const learners = membership.filter((m) => m.learner);
    const n = this.options.nodes;
    let result;
    let what: string;
    if (voters.length + learners.length < n + 1 && (voters.length < n || this.rng.chance(0.5))) {
      const id = this.nextNodeId++;
      // A brand-new node with an empty disk; it learns the membership from the leader.
      this.addNode(id, new MemoryStorage({ index: 0, term: 0, membership: [] }), []);
      const kind = this.rng.chance(0.8)
        ? MembershipChangeKind.AddLearner
        : MembershipChangeKind.AddVoter;
      result = leader.node.proposeMembershipChange(kind, {
        nodeId: id,
        address: `sim-${id}`,
        incarnation: id,
      });
      what = `${kind} ${id}`;
    } else {
      const removable = membership.filter((m) => m.learner || voters.length > 2);
      const victim = this.pick(removable);
      if (!victim) return;
      result = leader.node.proposeMembershipChange(MembershipChangeKind.Remove, {
        nodeId: victim.id,
        address: '',
        incarnation: 0,
      });
      what = `remove ${victim.id}`;
    }
    if (result.ok) this.stats.membershipChanges++;
    this.trace(
      () =>
        `membership ${what} at ${leader.id}: ${result.ok ? `index ${result.index}` : result.refusal}`,
    );
  }

  private requestTransfer(): void {
    const leader = this.leader();
    if (!leader?.node) return;
    const voters = leader.node.status().membership.filter((m) => !m.learner && m.id !== leader.id);
    const target = this.pick(voters);
    if (!target) return;
    const result = leader.node.transferLeader(target.id);
    this.trace(
      () => `transfer ${leader.id}->${target.id}: ${result.ok ? 'started' : result.refusal}`,
    );
  }

  private compact(sim: SimNode): void {
    const storage = sim.disk.storage;
    const applied = sim.disk.applied.length;
    // Keep a few entries so that a slightly lagging follower is served from the log.
    const index = Math.min(applied, storage.lastIndex()) - this.rng.nextInt(3);
    if (index <= storage.currentSnapshot().index) return;
    storage.compact(index, sim.node!.membershipAt(index));
    sim.disk.snapshots.set(index, sim.disk.applied.slice(0, index));
    // Only the newest snapshot is kept, as a runtime would.
    for (const old of [...sim.disk.snapshots.keys()]) {
      if (old < index) sim.disk.snapshots.delete(old);
    }
    this.trace(() => `compact ${sim.id} to ${index}`);
  }

  // -------------------------------------------------------------------------------------------
  // Network
  // -------------------------------------------------------------------------------------------

  private send(from: SimNode, m: Message): void {
    const f = this.options.faults;
    const faulty = this.faultsOn;
    if (this.cutOff(m) || (faulty && this.rng.chance(f.drop))) {
      this.trace(() => `drop ${describeMessage(m)}`);
      this.reportLoss(from, m);
      return;
    }
    let snapshotData: readonly string[] | null = null;
    if (m.type === MessageType.Snapshot) {
      const data = from.disk.snapshots.get(m.snapshot!.index);
      if (data === undefined) {
        throw new SafetyViolation(
          `node ${from.id} sent snapshot ${m.snapshot!.index} it does not have`,
        );
      }
      snapshotData = data;
    }
    const copies = faulty && this.rng.chance(f.duplicate) ? 2 : 1;
    const toIncarnation = from.node?.membership().find((x) => x.id === m.to)?.incarnation;
    for (let c = 0; c < copies; c++) {
      const delay = faulty ? 1 + this.rng.nextInt(f.delayStepsMax) : 1 + this.rng.nextInt(3);
      this.network.push({
        deliverAt: this.step + delay,
        seq: ++this.messageSeq,
        message: m,
        fromIncarnation: from.incarnation,
        toIncarnation,
        snapshotData,
      });
    }
  }

  /** A lost message: the transport would notice some failures and report them. */
  private reportLoss(from: SimNode, m: Message): void {
    if (m.type === MessageType.Snapshot) {
      this.pendingSnapshotReports.push({ at: this.step + 5, from: m.from, to: m.to, ok: false });
    } else if (this.rng.chance(0.3)) {
      from.node?.reportUnreachable(m.to);
    }
  }

  private cutOff(m: Message): boolean {
    if (this.blocked.has(`${m.from}->${m.to}`)) return true;
    for (const id of [m.from, m.to]) {
      const until = this.isolatedUntil.get(id);
      if (until === undefined) continue;
      if (until > this.step) return true;
      this.isolatedUntil.delete(id);
    }
    return false;
  }

  private deliverDue(): void {
    const due = this.network.filter((x) => x.deliverAt <= this.step);
    if (due.length === 0) return;
    this.network = this.network.filter((x) => x.deliverAt > this.step);
    // Same-step messages are delivered in a random order.
    for (let i = due.length - 1; i > 0; i--) {
      const j = this.rng.nextInt(i + 1);
      [due[i], due[j]] = [due[j], due[i]];
    }
    for (const x of due) this.deliver(x);
  }

  private deliver(x: InFlight): void {
    const m = x.message;
    const target = this.nodes.get(m.to);
    const sender = this.nodes.get(m.from);
    if (!target?.node || this.cutOff(m)) {
      this.trace(() => `lost ${describeMessage(m)}`);
      if (sender) this.reportLoss(sender, m);
      return;
    }
    if (this.options.checkIncarnations !== false && !this.incarnationsAgree(x, target)) {
      this.trace(() => `refused (incarnation) ${describeMessage(m)}`);
      if (sender) this.reportLoss(sender, m);
      return;
    }
    this.stats.messagesDelivered++;
    this.trace(() => `deliver ${describeMessage(m)}`);
    if (x.snapshotData !== null) {
      target.incomingSnapshots.set(`${m.snapshot!.index}/${m.snapshot!.term}`, x.snapshotData);
      // The sender's transport learns that the transfer finished.
      this.pendingSnapshotReports.push({ at: this.step + 1, from: m.from, to: m.to, ok: true });
    }
    target.node.step(m);
    this.observeRole(target);
    this.maybeSendEarly(target);
  }

  /**
   * What the runtime's peers check: a request reaches only the incarnation the sender's
   * membership records for the receiver (the runtime's transport has no connection to a node its
   * membership does not list, so nothing reaches it). A response rides back on its request's RPC
   * in the runtime, so it comes from the incarnation that passed that check: here it must come
   * from the incarnation the requester records for the responder. A vote request is also refused
   * from a candidate the voter records as another incarnation: a node that lost its disk and
   * learned an old configuration from a snapshot must not be elected by it as the member it was.
   */
  private incarnationsAgree(x: InFlight, target: SimNode): boolean {
    const m = x.message;
    const recordedSender = (): number | undefined =>
      target.node?.membership().find((mb) => mb.id === m.from)?.incarnation;
    if (isResponse(m.type)) {
      const recorded = recordedSender();
      return recorded === undefined || recorded === x.fromIncarnation;
    }
    if (x.toIncarnation !== target.incarnation) return false;
    const vote = m.type === MessageType.Vote || m.type === MessageType.PreVote;
    if (vote && this.options.checkCandidateIncarnations !== false) {
      const recorded = recordedSender();
      return recorded === undefined || recorded === x.fromIncarnation;
    }
    return true;
  }

  /** Like a runtime busy with an earlier Ready: sends a leader's appends and heartbeats at once. */
  private maybeSendEarly(sim: SimNode): void {
    if (sim.node === null || !this.rng.chance(0.5)) return;
    for (const m of sim.node.takeMessagesSendableNow()) this.send(sim, m);
  }

  private deliverSnapshotReports(): void {
    for (let i = 0; i < this.pendingSnapshotReports.length;) {
      const r = this.pendingSnapshotReports[i];
      if (r.at > this.step) {
        i++;
        continue;
      }
      this.pendingSnapshotReports.splice(i, 1);
      const sender = this.nodes.get(r.from);
      sender?.node?.reportSnapshot(r.to, r.ok);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Ready handling: what a runtime does, with crashes in between
  // -------------------------------------------------------------------------------------------

  private processReadies(): void {
    for (let round = 0; round < 4; round++) {
      let any = false;
      for (const sim of this.liveNodes()) {
        const node = sim.node!;
        this.observeRole(sim);
        if (!node.hasReady()) continue;
        any = true;
        this.handleReady(sim, node.ready());
      }
      if (!any) break;
    }
  }

  /** Runs after every input to a node: election safety and leader completeness. */
  private observeRole(sim: SimNode): void {
    if (sim.node === null) return;
    const st = sim.node.basicStatus();
    if (st.role === Role.Leader) {
      this.checker.observeLeader(st.term, sim.id);
      if (sim.lastRole !== Role.Leader || sim.lastTerm !== st.term) {
        this.stats.leaderChanges++;
        this.trace(() => `leader ${sim.id} term ${st.term}`);
        if (this.faultsOn && this.rng.chance(this.options.faults.isolateNewLeader)) {
          const steps =
            this.options.stepsPerTick * (1 + this.rng.nextInt(3 * this.options.electionTicks));
          this.isolatedUntil.set(sim.id, this.step + steps);
          this.trace(() => `isolate ${sim.id} for ${steps} steps`);
        }
        // A leader's unpersisted tail holds only its own new entries (its vote requests left
        // after everything before was persisted), so its stored log must hold every commit.
        const storage = sim.disk.storage;
        this.checker.checkLeaderComplete(sim.id, st.term, storage.firstIndex(), st.lastIndex, (i) =>
          storage.term(i),
        );
      }
    }
    sim.lastRole = st.role;
    sim.lastTerm = st.term;
  }

  private handleReady(sim: SimNode, rd: Ready): void {
    const node = sim.node!;
    this.trace(() => `ready ${sim.id}\n${describeReady(rd)}`);
    // Every simulated node is correct and keeps what it persisted, so the core never has a reason
    // to refuse a message: a refusal means a peer broke the protocol (or the core is wrong).
    for (const r of rd.refused) {
      throw new SafetyViolation(
        `node ${sim.id} refused ${describeMessage(r.message)} (${r.kind}): ${r.reason}`,
      );
    }
    const early = this.rng.chance(0.5) ? rd.messages.filter(mayBeSentBeforePersist) : [];
    for (const m of early) this.send(sim, m);
    if (this.faultsOn && this.rng.chance(this.options.faults.crashInReady)) {
      this.crash(sim);
      return;
    }
    // 1. Persist.
    const storage = sim.disk.storage;
    if (rd.snapshot !== null) {
      const key = `${rd.snapshot.index}/${rd.snapshot.term}`;
      const data = sim.incomingSnapshots.get(key);
      if (data === undefined)
        throw new SafetyViolation(`node ${sim.id} installs unknown snapshot ${key}`);
      data.forEach((entry, i) => this.checker.observeApplied(sim.id, i + 1, entry));
      storage.applySnapshot(rd.snapshot);
      sim.disk.applied = [...data];
      sim.disk.snapshots.clear();
      sim.disk.snapshots.set(rd.snapshot.index, data);
      sim.incomingSnapshots.clear();
      this.stats.snapshotsInstalled++;
    }
    if (rd.entries.length > 0) {
      storage.append(rd.entries);
      for (const e of rd.entries) {
        const prevTerm = storage.term(e.index - 1) ?? -1;
        this.checker.observeStored(sim.id, e, prevTerm);
      }
    }
    if (rd.hardState !== null) storage.setHardState(rd.hardState);
    // 2. Send.
    for (const m of rd.messages) if (!early.includes(m)) this.send(sim, m);
    // 3. Apply.
    for (const e of rd.committedEntries) this.apply(sim, e);
    for (const r of rd.readStates) this.serveRead(sim, r.requestId, r.index);
    // 4. Advance.
    node.advance();
  }

  private apply(sim: SimNode, e: Entry): void {
    const disk = sim.disk;
    if (e.index !== disk.applied.length + 1) {
      throw new SafetyViolation(`node ${sim.id} applies ${e.index} after ${disk.applied.length}`);
    }
    if (e.index > disk.storage.hardState.commit) {
      throw new SafetyViolation(
        `node ${sim.id} applies ${e.index} beyond its durable commit ${disk.storage.hardState.commit}`,
      );
    }
    const key = entryKey(e);
    this.checker.observeApplied(sim.id, e.index, key);
    disk.applied.push(key);
  }

  private serveRead(sim: SimNode, requestId: number, index: number): void {
    const pending = this.pendingReads.get(requestId);
    if (pending === undefined) return;
    this.pendingReads.delete(requestId);
    // Linearizability of ReadIndex: the read index covers everything committed before the read
    // was requested.
    if (index < pending.committedAtStart) {
      throw new SafetyViolation(
        `read #${requestId} at node ${sim.id} got index ${index}, but ${pending.committedAtStart} was committed before it started`,
      );
    }
    this.stats.readsServed++;
  }

  // -------------------------------------------------------------------------------------------
  // Healing and liveness
  // -------------------------------------------------------------------------------------------

  private heal(): void {
    this.faultsOn = false;
    this.blocked.clear();
    this.isolatedUntil.clear();
    for (const sim of this.nodes.values()) {
      sim.disk.storage.unavailableBelow = 0;
      if (sim.node === null) this.start(sim);
    }
    this.trace(() => 'healed');
  }

  private checkLiveness(): void {
    const o = this.options;
    const marker = new TextEncoder().encode(`live${o.seed}`);
    let proposal: { index: number; term: number } | null = null;
    for (let t = 0; t < o.healTicksMax; t++) {
      this.runTick();
      const leader = this.leader();
      if (!leader?.node) continue;
      if (proposal !== null) {
        const { index, term } = proposal;
        const key = this.checker.committedAt(index);
        if (
          key !== undefined &&
          key === entryKey({ index, term, type: EntryType.Normal, data: marker })
        ) {
          this.trace(() => `live: leader ${leader.id} committed ${index}`);
          this.checkConvergence(leader, index, o.healTicksMax - t);
          return;
        }
      }
      // A node that lost its disk is removed and added again as it is now.
      this.repairLostDisk(leader);
      // (Re)propose when nothing is pending, or when a newer leader may have dropped it.
      if (proposal === null || leader.node.basicStatus().term > proposal.term) {
        const result = leader.node.propose([marker]);
        this.trace(
          () =>
            `live: propose at ${leader.id}: ${result.ok ? `index ${result.index}` : result.refusal}`,
        );
        if (result.ok) proposal = { index: result.index, term: result.term };
      }
    }
    throw new SafetyViolation(
      `liveness: no leader committed a proposal within ${o.healTicksMax} ticks after healing`,
    );
  }

  /** Every member of the leader's configuration catches up to `index` within the budget. */
  private checkConvergence(leader: SimNode, index: number, ticksMax: number): void {
    const members = () => leader.node?.status().membership ?? [];
    for (let t = 0; t <= ticksMax; t++) {
      if (leader.node !== null) this.repairLostDisk(leader);
      const behind = members().filter(
        (m) => (this.nodes.get(m.id)?.disk.applied.length ?? 0) < index,
      );
      if (behind.length === 0) return;
      this.runTick();
    }
    const lagging = members()
      .map((m) => `${m.id}@${this.nodes.get(m.id)?.disk.applied.length ?? 0}`)
      .join(' ');
    throw new SafetyViolation(
      `liveness: members did not all apply ${index} within ${ticksMax} ticks after healing (${lagging})`,
    );
  }
}

export function runSimulation(options: SimulationOptions): SimulationResult {
  return new Simulation(options).run();
}
