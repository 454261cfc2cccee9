// The nemeses: faults the chaos suite injects while the clients run, each started and later healed,
// scheduled at random from one seed and sometimes overlapping. kill -9 and restart; SIGSTOP /
// SIGCONT pauses longer than an election timeout; partitions cut through the per-link proxies
// (isolated leader, majority/minority, bridge, one-way) and slow links; a member removed and a new
// one added while the clients run; leadership transfers; a follower cut off until the leader has
// compacted past it, then healed so that it must install a snapshot in blocks; a member that
// loses its data dir and is restarted as before (amnesia), which must not be counted as the
// member it was, then removed and added again as an operator would; slot ranges holding the
// clients' keys moved between kv groups (with their data) while the other faults strike.
import { formatSlotRanges, slotOfKey } from '@eraftkv/protocol';
import { waitUntil } from '@eraftkv/test-support';
import type { EraftKvClient } from '@eraftkv/client';
import { rm } from 'node:fs/promises';
import { httpGet, type NodeSpec } from '../local-cluster';
import type { ChaosCluster } from './chaos-cluster';
import type { ChaosRng } from './chaos-rng';

/** What the kv group's leader says of its members (EraftKvClient.members). */
type MembersRead = Awaited<ReturnType<EraftKvClient['members']>>;

export const nemesisKinds = [
  'kill',
  'pause',
  'partition',
  'delay',
  'membership',
  'transfer',
  'snapshot',
  'amnesia',
  'move',
] as const;
export type NemesisKind = (typeof nemesisKinds)[number];

export interface NemesisEvent {
  /** Seconds since the run started. */
  readonly at: number;
  readonly kind: NemesisKind;
  readonly phase: 'start' | 'heal' | 'skip';
  readonly description: string;
}

interface ActiveFault {
  readonly kind: NemesisKind;
  readonly description: string;
  heal(): Promise<void>;
}

export interface NemesisContext {
  readonly cluster: ChaosCluster;
  /** An admin client (members, leader transfer). */
  readonly client: EraftKvClient;
  readonly rng: ChaosRng;
  readonly compactionMarginEntries: number;
  readonly log: (line: string) => void;
  /** Keys the clients fight over: half the slot moves take a range holding one of them. */
  readonly hotKeys: readonly string[];
  /** The bulk writer's keys: the other half take a range holding one of these. */
  readonly bulkKeys: readonly string[];
}

export class Nemesis {
  readonly events: NemesisEvent[] = [];
  private readonly active = new Set<ActiveFault>();
  /** kv members of group 1 by id (changes with the membership nemesis). */
  private readonly members: Set<number>;
  private readonly paused = new Set<string>();
  private readonly started = Date.now();
  readonly stats = {
    snapshotsForced: 0,
    membershipChanges: 0,
    transfers: 0,
    kills: 0,
    pauses: 0,
    partitions: 0,
    amnesias: 0,
    amnesiasRefused: 0,
    /** Slot moves asked for, and how they ended (unknown: the call gave up, the move went on). */
    slotMoves: 0,
    slotMovesCommitted: 0,
    slotMovesRolledBack: 0,
    slotMovesUnknown: 0,
    slotsMoved: 0,
  };
  /** The slot move in flight (one at a time: the meta leader queues them anyway). */
  private moving: Promise<void> | null = null;
  /** Safety problems the nemeses saw themselves (a node that lost its data and was counted). */
  readonly problems: string[] = [];

  constructor(
    private readonly ctx: NemesisContext,
    private readonly kinds: readonly NemesisKind[],
  ) {
    this.members = new Set([1, 2, 3]);
  }

  private note(kind: NemesisKind, phase: NemesisEvent['phase'], description: string): void {
    const at = Number(((Date.now() - this.started) / 1000).toFixed(1));
    this.events.push({ at, kind, phase, description });
    this.ctx.log(`[nemesis ${at}s] ${phase} ${kind}: ${description}`);
  }

  /** What is broken right now, for the progress line. */
  describeActive(): string {
    return [...this.active].map((f) => `${f.kind}(${f.description})`).join(' + ') || 'none';
  }

  memberSpecs(): NodeSpec[] {
    return this.ctx.cluster.kvNodes.filter((n) => this.members.has(n.id));
  }

  /** The members of kv group `group` (group 1's change with the membership nemesis). */
  groupMembers(group: number): NodeSpec[] {
    if (group === 1) return this.memberSpecs();
    return [...(this.ctx.cluster.otherGroups.get(group) ?? [])];
  }

  /**
   * Takes the kv group's members from its leader. A membership call that failed (its answer
   * lost, its deadline passed) may still have taken effect, so the suite's own record of the
   * members is corrected from the group after every failed change and before the final checks.
   */
  async syncMembers(): Promise<void> {
    const { members } = await this.ctx.client.members(1, { deadlineMs: 10_000 });
    const ids = new Set(members.map((m) => m.id));
    const before = [...this.members].sort().join(',');
    const after = [...ids].sort().join(',');
    if (before === after) return;
    this.ctx.log(`[nemesis] the group's members are ${after} (the suite had recorded ${before})`);
    this.members.clear();
    for (const id of ids) this.members.add(id);
  }

  /**
   * Runs faults until `untilMs` (Date.now() based): every kind once in a shuffled order first,
   * then at random; each held for a few seconds; now and then a second one overlaps.
   */
  async run(untilMs: number, shouldStop: () => boolean): Promise<void> {
    const rng = this.ctx.rng;
    const order = [...rng.sample(this.kinds, this.kinds.length)];
    const retried = new Set<NemesisKind>();
    while (Date.now() < untilMs && !shouldStop()) {
      const kind = order.shift() ?? rng.pick(this.kinds);
      // Slot moves are the fault the others must not break: often one starts just before
      // another fault, so that the fault strikes the move mid-way.
      if (
        kind !== 'move' &&
        this.kinds.includes('move') &&
        rng.chance(0.4) &&
        Date.now() < untilMs - 4000
      ) {
        await this.startFault('move');
      }
      const fault = await this.startFault(kind);
      // A fault that could not start now (no leader during an election...) gets another turn.
      if (fault === null && !retried.has(kind)) {
        retried.add(kind);
        order.push(kind);
      }
      // Now and then a second fault overlaps (not one that changes the membership).
      const overlapping = this.kinds.filter(
        (k) => k !== kind && k !== 'membership' && k !== 'snapshot' && k !== 'amnesia',
      );
      if (
        fault !== null &&
        overlapping.length > 0 &&
        rng.chance(0.3) &&
        Date.now() < untilMs - 4000
      ) {
        await this.startFault(rng.pick(overlapping));
      }
      const hold = fault?.kind === 'snapshot' ? 0 : rng.between(2000, 5000);
      await this.sleepUntil(Math.min(untilMs, Date.now() + hold), shouldStop);
      await this.healAll();
      await this.sleepUntil(Math.min(untilMs, Date.now() + rng.between(800, 2500)), shouldStop);
    }
    await this.healAll();
  }

  private async sleepUntil(when: number, shouldStop: () => boolean): Promise<void> {
    while (Date.now() < when && !shouldStop()) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(200, when - Date.now())));
    }
  }

  /** Heals every active fault (restarts killed nodes, resumes paused ones, reconnects links). */
  async healAll(): Promise<void> {
    // A node that lost its data is removed and added again last, once every other fault is
    // healed: the removal needs a majority of the group running and connected.
    const faults = [...this.active].sort(
      (a, b) => Number(a.kind === 'amnesia') - Number(b.kind === 'amnesia'),
    );
    for (const fault of faults) {
      this.active.delete(fault);
      try {
        await fault.heal();
        this.note(fault.kind, 'heal', fault.description);
      } catch (err) {
        this.note(
          fault.kind,
          'heal',
          `${fault.description} (heal failed: ${(err as Error).message})`,
        );
      }
    }
    // Belt and braces: everything a fault might have left behind.
    for (const name of this.paused)
      this.ctx.cluster.local
        .runningNodes()
        .find((n) => n.spec.name === name)
        ?.process.kill('SIGCONT');
    this.paused.clear();
    this.ctx.cluster.healLinks();
    const groups = [...this.ctx.cluster.otherGroups.values()].flat();
    for (const spec of [...this.ctx.cluster.metaNodes, ...this.memberSpecs(), ...groups]) {
      if (!this.ctx.cluster.local.isRunning(spec.name))
        await this.ctx.cluster.local.start(spec.name);
    }
  }

  private async startFault(kind: NemesisKind): Promise<ActiveFault | null> {
    let fault: ActiveFault | null = null;
    try {
      switch (kind) {
        case 'kill':
          fault = await this.kill();
          break;
        case 'pause':
          fault = await this.pause();
          break;
        case 'partition':
          fault = this.partition();
          break;
        case 'delay':
          fault = this.delay();
          break;
        case 'membership':
          fault = await this.membership();
          break;
        case 'transfer':
          fault = await this.transfer();
          break;
        case 'snapshot':
          fault = await this.snapshot();
          break;
        case 'amnesia':
          fault = await this.amnesia();
          break;
        case 'move':
          fault = await this.move();
          break;
      }
    } catch (err) {
      this.note(kind, 'skip', `could not start: ${(err as Error).message}`);
      return null;
    }
    if (fault === null) return null;
    this.active.add(fault);
    this.note(kind, 'start', fault.description);
    return fault;
  }

  private async kvLeader(group = 1): Promise<NodeSpec | undefined> {
    const { leaderId } = await this.ctx.client.members(group, { deadlineMs: 3000 });
    return this.groupMembers(group).find((n) => n.id === leaderId);
  }

  /** A kv group at random: group 1 (whose membership changes) half the time. */
  private pickGroup(): number {
    const others = [...this.ctx.cluster.otherGroups.keys()];
    return others.length === 0 || this.ctx.rng.chance(0.5) ? 1 : this.ctx.rng.pick(others);
  }

  /**
   * A target for kill and pause: often a kv leader, sometimes any kv member or a meta node (the
   * meta leader when a slot move is in flight, now and then).
   */
  private async target(): Promise<NodeSpec> {
    const rng = this.ctx.rng;
    const roll = rng.float();
    const running = (s: NodeSpec): boolean =>
      this.ctx.cluster.local.isRunning(s.name) && !this.paused.has(s.name);
    const group = this.pickGroup();
    if (roll < 0.5) {
      const leader = await this.kvLeader(group).catch(() => undefined);
      if (leader !== undefined && running(leader)) return leader;
    }
    if (roll >= 0.8 && this.moving !== null && rng.chance(0.7)) {
      const leader = await this.kvLeader(0).catch(() => undefined);
      const meta = this.ctx.cluster.metaNodes.find((n) => n.id === leader?.id);
      if (meta !== undefined && running(meta)) return meta;
    }
    const pool = roll < 0.8 ? this.groupMembers(group) : [...this.ctx.cluster.metaNodes];
    const candidates = pool.filter(running);
    if (candidates.length === 0) throw new Error('no running node to target');
    return rng.pick(candidates);
  }

  private async kill(): Promise<ActiveFault> {
    const victim = await this.target();
    await this.ctx.cluster.local.signal(victim.name, 'SIGKILL');
    this.stats.kills++;
    return {
      kind: 'kill',
      description: `kill -9 ${victim.name}`,
      heal: async () => {
        if (
          !this.ctx.cluster.local.isRunning(victim.name) &&
          (victim.kind === 'meta' || victim.group !== 1 || this.members.has(victim.id))
        ) {
          await this.ctx.cluster.local.start(victim.name);
        }
      },
    };
  }

  private async pause(): Promise<ActiveFault> {
    const victim = await this.target();
    const node = this.ctx.cluster.local.runningNodes().find((n) => n.spec.name === victim.name);
    if (node === undefined) throw new Error(`${victim.name} is not running`);
    node.process.kill('SIGSTOP');
    this.paused.add(victim.name);
    this.stats.pauses++;
    return {
      kind: 'pause',
      description: `SIGSTOP ${victim.name}`,
      heal: () => {
        node.process.kill('SIGCONT');
        this.paused.delete(victim.name);
        return Promise.resolve();
      },
    };
  }

  /** Cuts links of the kv group (usually) or the meta group in one of several shapes. */
  private partition(): ActiveFault {
    const rng = this.ctx.rng;
    const cluster = this.ctx.cluster;
    const nodes = rng.chance(0.8) ? this.groupMembers(this.pickGroup()) : [...cluster.metaNodes];
    const mode = rng.chance(0.7) ? ({ kind: 'blackhole' } as const) : ({ kind: 'drop' } as const);
    const shuffled = rng.sample(nodes, nodes.length);
    const shape = rng.pick(['isolate', 'split', 'bridge', 'one-way'] as const);
    let description: string;
    switch (shape) {
      case 'isolate':
      case 'split': {
        const size = shape === 'isolate' ? 1 : Math.max(1, Math.floor(shuffled.length / 2));
        const side = shuffled.slice(0, size);
        const rest = shuffled.slice(size);
        cluster.cut(side, rest, mode);
        cluster.cut(rest, side, mode);
        description = `${shape} {${side.map((n) => n.name).join(',')}} | {${rest.map((n) => n.name).join(',')}} (${mode.kind})`;
        break;
      }
      case 'bridge': {
        // a and c cannot talk; b talks to both.
        const [a, b, ...others] = shuffled;
        if (others.length === 0) throw new Error('a bridge needs three nodes');
        cluster.cut([a], others, mode);
        cluster.cut(others, [a], mode);
        description = `bridge ${a.name} <-> ${b.name} <-> {${others.map((n) => n.name).join(',')}} (${mode.kind})`;
        break;
      }
      case 'one-way': {
        const [a, ...others] = shuffled;
        cluster.cut([a], others, mode);
        description = `one-way ${a.name} -/-> {${others.map((n) => n.name).join(',')}} (${mode.kind})`;
        break;
      }
    }
    this.stats.partitions++;
    return { kind: 'partition', description, heal: () => Promise.resolve(cluster.healLinks()) };
  }

  private delay(): ActiveFault {
    const rng = this.ctx.rng;
    const nodes = this.groupMembers(this.pickGroup());
    const victim = rng.pick(nodes);
    const ms = rng.between(50, 200);
    this.ctx.cluster.cut([victim], nodes, { kind: 'delay', ms });
    this.ctx.cluster.cut(nodes, [victim], { kind: 'delay', ms });
    return {
      kind: 'delay',
      description: `${ms} ms on every link of ${victim.name}`,
      heal: () => Promise.resolve(this.ctx.cluster.healLinks()),
    };
  }

  /** Removes a kv member and adds a brand-new node (a spare) as a learner; it is promoted. */
  private async membership(): Promise<ActiveFault | null> {
    const rng = this.ctx.rng;
    const spare = this.ctx.cluster.kvNodes.find(
      (n) => !this.members.has(n.id) && !this.ctx.cluster.local.isRunning(n.name) && n.id > 3,
    );
    if (spare === undefined) {
      this.note('membership', 'skip', 'no spare node left');
      return null;
    }
    if ((await this.membersWithoutLearner()) === null) {
      this.note('membership', 'skip', 'a learner is still catching up');
      return null;
    }
    const victim = rng.pick(this.memberSpecs());
    await this.removeMember(victim);
    this.stats.membershipChanges++;
    await this.ctx.cluster.local.signal(victim.name, 'SIGTERM');
    await rm(victim.dataDir, { recursive: true, force: true });
    await this.ctx.cluster.local.start(spare.name);
    await this.addMember(spare);
    this.stats.membershipChanges++;
    return {
      kind: 'membership',
      description: `removed ${victim.name}, added ${spare.name} as a learner`,
      heal: () => Promise.resolve(),
    };
  }

  /**
   * The kv group's members as its leader reads them, once none of them is a learner still
   * catching up (a member added a moment ago is promoted within seconds); null if one still is
   * after 15 s.
   */
  private async membersWithoutLearner(): Promise<MembersRead | null> {
    return waitUntil(
      async () => {
        const read = await this.ctx.client.members(1, { deadlineMs: 3000 });
        return read.members.some((m) => m.learner) ? undefined : read;
      },
      15_000,
      'every learner of the kv group to be promoted',
    ).catch(() => null);
  }

  /**
   * membersWithoutLearner, once the leader has committed everything its log held when they were
   * read (so that no membership change among them is still only appended); null otherwise.
   */
  private async committedMembersWithoutLearner(): Promise<MembersRead['members'] | null> {
    const read = await this.membersWithoutLearner();
    if (read === null) return null;
    return waitUntil(
      async () => {
        const now = await this.ctx.client.members(1, { deadlineMs: 3000 });
        return now.leaderId === read.leaderId && now.commitIndex >= read.lastLogIndex
          ? read.members
          : undefined;
      },
      5_000,
      'the kv leader to commit its membership',
    ).catch(() => null);
  }

  /** Removes a kv member; a call whose answer was lost is checked against the group. */
  private async removeMember(spec: NodeSpec): Promise<void> {
    try {
      await this.ctx.client.removeMember(1, spec.id, { deadlineMs: 10_000 });
    } catch (err) {
      await this.syncMembers().catch(() => undefined);
      if (this.members.has(spec.id)) throw err;
    }
    this.members.delete(spec.id);
  }

  /** Adds a running kv node as a learner (promoted once caught up). */
  private async addMember(spec: NodeSpec): Promise<void> {
    // The removal before it must commit first: retry while a change is pending.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ctx.client.addMember(1, spec.id, spec.grpcAddress, true, { deadlineMs: 8000 });
        break;
      } catch (err) {
        await this.syncMembers().catch(() => undefined);
        if (this.members.has(spec.id)) break;
        if (attempt >= 5) throw err;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    this.members.add(spec.id);
  }

  /**
   * A kv member loses its data dir (kill -9, the dir deleted) and is restarted exactly as before.
   * It must not count as the member it was: with its --peers it must refuse to start, saying that
   * the group knows another incarnation; started with an empty --peers (a member added later) it
   * must stay unhealthy, refused by the group. Healed the operator's way: removed, started anew
   * with an empty --peers, and added again; it catches up through a snapshot.
   */
  private async amnesia(): Promise<ActiveFault | null> {
    const local = this.ctx.cluster.local;
    const running = this.memberSpecs().filter(
      (n) => local.isRunning(n.name) && !this.paused.has(n.name),
    );
    // Losing one disk of three is survivable; losing a second before the first replacement has
    // caught up (while it is still a learner) loses a majority's data, which no group survives.
    // The membership must also be committed: a promotion the leader has appended but not yet
    // committed could be lost, leaving two voters of which one is wiped.
    const members = await this.committedMembersWithoutLearner();
    if (running.length < 3 || members === null || members.length < 3) {
      this.note(
        'amnesia',
        'skip',
        'it needs at least three voters, every member caught up (no learner) and running',
      );
      return null;
    }
    const victim = this.ctx.rng.pick(running);
    await local.signal(victim.name, 'SIGKILL');
    await rm(victim.dataDir, { recursive: true, force: true });
    this.stats.amnesias++;
    const args = local.spec(victim.name).args;
    const withPeers = args[args.indexOf('--peers') + 1] !== '';
    const node = await local.start(victim.name);
    let outcome: string;
    if (withPeers) {
      const ended = await Promise.race([
        node.ended,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 15_000)),
      ]);
      const lines = node.lastLines().join('\n');
      if (ended === null) {
        outcome = 'still waiting for its --peers to answer after 15 s';
      } else if (ended.code !== 0 && /this node lost its data/.test(lines)) {
        this.stats.amnesiasRefused++;
        outcome = 'refused to start: the group knows another incarnation of it';
      } else {
        outcome = `did not refuse to start (${ended.code ?? ended.signal})`;
        this.problems.push(`${victim.name} restarted with an empty data dir: ${outcome}`);
      }
    } else {
      // Never healthy while the group still counts the old incarnation.
      const healthy = await waitUntil(
        async () =>
          (await httpGet(victim.metricsAddress, '/health'))?.status === 200 ? true : undefined,
        8000,
        `${victim.name} to report healthy`,
      ).catch(() => false);
      if (healthy) {
        outcome = 'reported itself healthy while the group knew another incarnation';
        this.problems.push(`${victim.name} restarted with an empty data dir: ${outcome}`);
      } else {
        this.stats.amnesiasRefused++;
        outcome = 'runs, refused by the group and unhealthy';
      }
    }
    return {
      kind: 'amnesia',
      description: `${victim.name} lost its data dir and was restarted as before: ${outcome}`,
      heal: async () => {
        // The operator's path (README): remove it, start it anew with an empty --peers, add it.
        if (local.isRunning(victim.name)) await local.signal(victim.name, 'SIGKILL');
        await this.removeMember(victim);
        local.startAsJoiner(victim.name);
        await local.start(victim.name);
        await this.addMember(victim);
      },
    };
  }

  /**
   * Moves a random range of slots holding some of the clients' keys from its owner to another kv
   * group, in the background: the move goes on (or rolls back) on its own while other faults
   * strike; its heal does not wait for it. One move at a time.
   */
  private async move(): Promise<ActiveFault | null> {
    const rng = this.ctx.rng;
    const groups = this.ctx.cluster.kvGroupIds();
    if (groups.length < 2) {
      this.note('move', 'skip', 'slot moves need at least two kv groups');
      return null;
    }
    if (this.moving !== null) {
      this.note('move', 'skip', 'a slot move is still in flight');
      return null;
    }
    const view = await this.ctx.client.cluster({ deadlineMs: 3000 });
    const owner = new Map<number, number>();
    for (const g of view.groups) for (const slot of g.slots) owner.set(slot, g.id);
    const key =
      this.ctx.bulkKeys.length === 0 || rng.chance(0.5)
        ? rng.pick(this.ctx.hotKeys)
        : rng.pick(this.ctx.bulkKeys);
    const around = slotOfKey(Buffer.from(key), view.slotCount);
    const source = owner.get(around);
    if (source === undefined) {
      this.note('move', 'skip', `slot ${around} of ${key} has no owner`);
      return null;
    }
    // A contiguous range around the key's slot, all of it owned by the source (1-96 slots).
    const span = rng.between(1, 96);
    const leftWanted = rng.int(span);
    let from = around;
    while (from > 0 && around - from < leftWanted && owner.get(from - 1) === source) from--;
    const slots: number[] = [];
    for (let slot = from; slots.length < span && owner.get(slot) === source; slot++) {
      slots.push(slot);
    }
    const target = rng.pick(groups.filter((g) => g !== source));
    const what = `slots ${formatSlotRanges(slots)} (${key}'s among them) from group ${source} to ${target}`;
    this.stats.slotMoves++;
    const started = Date.now();
    this.moving = this.ctx.client
      .moveSlots(target, slots, { deadlineMs: 60_000 })
      .then(
        () => {
          this.stats.slotMovesCommitted++;
          this.stats.slotsMoved += slots.length;
          this.ctx.log(`[nemesis] move of ${what}: committed in ${Date.now() - started} ms`);
        },
        (err: unknown) => {
          // A refusal after the freeze is a rollback; anything else (the meta leader lost, the
          // deadline) leaves the outcome to the meta group, which resumes or rolls back.
          const message = (err as Error).message;
          if (/rolled back/i.test(message)) this.stats.slotMovesRolledBack++;
          else this.stats.slotMovesUnknown++;
          this.ctx.log(`[nemesis] move of ${what}: ${message} (${Date.now() - started} ms)`);
        },
      )
      .finally(() => {
        this.moving = null;
      });
    return { kind: 'move', description: what, heal: () => Promise.resolve() };
  }

  /**
   * Waits for the nemesis's slot move, then until no slot of the topology is still Migrating
   * (a move whose caller gave up is resumed or rolled back by the meta leader).
   */
  async settleMoves(deadlineMs: number): Promise<void> {
    await this.moving;
    await waitUntil(
      async () => {
        const view = await this.ctx.client.cluster({ deadlineMs: 3000 }).catch(() => null);
        if (view === null) return undefined;
        return view.groups.every((g) => g.migratingTo.length === 0) ? true : undefined;
      },
      deadlineMs,
      'every slot move to commit or roll back',
      500,
    );
  }

  private async transfer(): Promise<ActiveFault | null> {
    const leader = await this.kvLeader();
    const { members } = await this.ctx.client.members(1, { deadlineMs: 3000 });
    const voters = members.filter(
      (m) => !m.learner && m.id !== leader?.id && this.ctx.cluster.local.isRunning(`kv-1-${m.id}`),
    );
    if (leader === undefined || voters.length === 0) {
      this.note('transfer', 'skip', 'no leader or no other voter');
      return null;
    }
    const target = this.ctx.rng.pick(voters);
    await this.ctx.client
      .transferLeader(1, target.id, { deadlineMs: 5000 })
      .catch((err: unknown) => {
        this.note(
          'transfer',
          'skip',
          `transfer to kv-1-${target.id} failed: ${(err as Error).message}`,
        );
      });
    this.stats.transfers++;
    return {
      kind: 'transfer',
      description: `kv-1-${leader.id} -> kv-1-${target.id}`,
      heal: () => Promise.resolve(),
    };
  }

  /**
   * Cuts a follower off and keeps the clients writing until the leader has compacted its log past
   * the follower's last entry; healed, the follower can only catch up through a snapshot.
   */
  private async snapshot(): Promise<ActiveFault | null> {
    const cluster = this.ctx.cluster;
    const leader = await this.kvLeader();
    const followers = this.memberSpecs().filter(
      (n) => n.id !== leader?.id && cluster.local.isRunning(n.name),
    );
    if (leader === undefined || followers.length === 0) {
      this.note('snapshot', 'skip', 'no leader or no follower');
      return null;
    }
    const follower = this.ctx.rng.pick(followers);
    const before = await this.ctx.client.status(follower.grpcAddress);
    const others = this.memberSpecs().filter((n) => n !== follower);
    cluster.cut([follower], others, { kind: 'blackhole' });
    cluster.cut(others, [follower], { kind: 'blackhole' });
    this.ctx.log(`[nemesis] snapshot: cut ${follower.name} off at index ${before.lastLogIndex}`);
    const deadline = Date.now() + 25_000;
    let compacted = false;
    while (Date.now() < deadline) {
      const status = await this.ctx.client.status(leader.grpcAddress).catch(() => null);
      if (
        status !== null &&
        status.snapshotIndex - this.ctx.compactionMarginEntries > before.lastLogIndex + 1
      ) {
        compacted = true;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    cluster.healLinks();
    if (compacted) this.stats.snapshotsForced++;
    return {
      kind: 'snapshot',
      description: compacted
        ? `${follower.name} healed after ${leader.name} compacted past it: it must install a snapshot`
        : `${follower.name} healed, but ${leader.name} did not compact in time`,
      heal: () => Promise.resolve(),
    };
  }
}
