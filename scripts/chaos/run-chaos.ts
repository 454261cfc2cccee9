// `npm run chaos -- [--duration 120] [--nemesis all|kill,pause,...] [--seed S] [--clients 6]
//                   [--keys 8] [--bulk-keys 2000] [--kv-groups 2] [--out ./chaos-results]
//                   [--watchers 3] [--watch-cut-ms 4000] [--lease-holders 2] [--keep-data]`
//
// The fault-tolerance suite: a real cluster with a proxy on every peer link, clients recording a
// history of every operation, nemeses breaking things (and moving slots between the kv groups)
// for --duration seconds; then everything is healed, every key is read once more, the history is
// checked for linearizability per key, every replica of each kv group must hold the same state
// (a digest at the same applied index), and every replica must hold keys only in the slots its
// group owns (a moved slot leaves nothing behind), and every watcher (a prefix watch and key
// watches, cut and resumed all along) must have seen every acknowledged write of its keys once,
// in order (watchers.ts), and no lease may expire before its TTL has run from the last keep-alive
// its group answered, while every lease nobody keeps alive does expire (leases.ts). Writes the
// history, a readable report and a summary to --out/<time>-seed<S>/. Exit code 0 only when every
// check passes.
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EraftKvClient, formatSlotRanges } from '@eraftkv/client';
import { rootUser } from '@eraftkv/server-kit';
import { httpGet, initializeCluster, repositoryDir, waitUntil } from '../local-cluster';
import { clientTlsOf, createLocalTls, nodeTlsArgs } from '../tls-certs';
import { authProblems, enableAuth, outsideKeyCount } from './auth';
import { OptionReader } from '../suite-options';
import { ChaosCluster } from './chaos-cluster';
import { ChaosRng } from './chaos-rng';
import { saveHistory } from './history';
import { checkLinearizability, formatReport, type CheckResult } from './linearizability';
import { ChaosLeaseHolders, type LeaseHoldersReport } from './leases';
import { Nemesis, nemesisKinds, type NemesisKind } from './nemesis';
import { ChaosWatchers, type WatchersReport } from './watchers';
import { Workload } from './workload';

interface ChaosOptions {
  durationS: number;
  nemeses: NemesisKind[];
  seed: number;
  clients: number;
  keys: number;
  bulkKeys: number;
  kvGroups: number;
  tls: boolean;
  auth: boolean;
  out: string;
  keepData: boolean;
  watchers: number;
  watchCutMs: number;
  leaseHolders: number;
}

const usage = `usage: npm run chaos -- [options]
  --duration S     seconds of faults (default 120)
  --nemesis LIST   all, or a comma list of: ${nemesisKinds.join(', ')} (default all)
  --seed S         the seed of the fault schedule and the workload (default: random, printed)
  --clients N      concurrent clients, at least 5 (default 6)
  --keys N         keys the clients fight over (default 8)
  --bulk-keys N    keys a bulk writer fills and the end reads back (default 2000)
  --kv-groups N    kv groups, 1-3; slots move between them (default 2)
  --tls            every node on mutual TLS with peer identity, every client with a certificate
  --auth           also auth enabled (implies --tls): the clients are a user granted only the
                   workload's keys; at the end that user must still be refused every other key
  --out DIR        where results go (default ./chaos-results)
  --watchers N     watches of the workload's keys: one of their whole prefix and N-1 of single
                   keys (default 3; 0: none)
  --watch-cut-ms M the suite stops a random watcher and resumes it from its last revisions about
                   this often (default 4000; 0: only faults cut them)
  --lease-holders N clients that each hold a lease with a key, keep it alive, revoke it or walk
                   away from it, over and over (default 2; 0: none)
  --keep-data      keep the cluster's data dir (its path is printed)`;

function parseArgs(argv: readonly string[]): ChaosOptions {
  const o: ChaosOptions = {
    durationS: 120,
    nemeses: [...nemesisKinds],
    seed: Math.floor(Math.random() * 2 ** 31),
    clients: 6,
    keys: 8,
    bulkKeys: 2000,
    kvGroups: 2,
    tls: false,
    auth: false,
    out: join(repositoryDir, 'chaos-results'),
    keepData: false,
    watchers: 3,
    watchCutMs: 4000,
    leaseHolders: 2,
  };
  const read = new OptionReader(argv, usage);
  const value = (): string => read.value();
  const int = (min: number): number => read.int(min);
  for (let arg = read.next(); arg !== undefined; arg = read.next()) {
    switch (arg) {
      case '--duration':
        o.durationS = int(5);
        break;
      case '--nemesis': {
        const list = value();
        o.nemeses =
          list === 'all'
            ? [...nemesisKinds]
            : list.split(',').map((k) => {
                if (!(nemesisKinds as readonly string[]).includes(k))
                  throw new Error(`unknown nemesis ${k}\n${usage}`);
                return k as NemesisKind;
              });
        break;
      }
      case '--seed':
        o.seed = int(0);
        break;
      case '--clients':
        o.clients = int(5);
        break;
      case '--keys':
        o.keys = int(1);
        break;
      case '--bulk-keys':
        o.bulkKeys = int(0);
        break;
      case '--kv-groups':
        o.kvGroups = int(1);
        if (o.kvGroups > 3) throw new Error('--kv-groups needs an integer from 1 to 3');
        break;
      case '--tls':
        o.tls = true;
        break;
      case '--auth':
        o.auth = true;
        o.tls = true;
        break;
      case '--out':
        o.out = resolve(value());
        break;
      case '--keep-data':
        o.keepData = true;
        break;
      case '--watchers':
        o.watchers = int(0);
        break;
      case '--watch-cut-ms':
        o.watchCutMs = int(0);
        break;
      case '--lease-holders':
        o.leaseHolders = int(0);
        break;
      case '--help':
      case '-h':
        console.log(usage);
        process.exit(0);
        break;
      default:
        throw read.unknown(arg);
    }
  }
  return o;
}

/** Timing and storage flags of every process: fast elections, frequent snapshots. */
const compactionMarginEntries = 50;
const chaosNodeArgs = [
  '--tick-ms',
  '50',
  '--snapshot-entries',
  '300',
  '--compaction-margin-entries',
  String(compactionMarginEntries),
  '--log-level',
  'info',
];

export interface ChaosSummary {
  readonly seed: number;
  readonly durationS: number;
  readonly nemeses: NemesisKind[];
  readonly verdict:
    | 'ok'
    | 'violation'
    | 'unknown'
    | 'replicas-differ'
    | 'copies-left'
    | 'lost-data-counted'
    | 'auth-wrong'
    | 'watch-wrong'
    | 'lease-wrong'
    | 'error';
  /** Safety problems the nemeses saw (a node that lost its data dir and was counted). */
  readonly problems: string[];
  readonly operations: { ok: number; fail: number; unknown: number; recorded: number };
  readonly faults: Record<string, number>;
  readonly snapshots: { sent: number; installed: number };
  readonly linearizable: CheckResult['result'];
  readonly replicas: { node: string; group: number; applied: number; digest: string }[];
  /** Keys a replica holds in slots its group does not own (after every move has settled). */
  readonly copiesLeft: string[];
  /** Bulk keys the final scan found, of those written. */
  readonly bulk: { keys: number; found: number };
  /** What the watchers saw, and what was wrong with it. */
  readonly watch: Omit<WatchersReport, 'errors'>;
  /** What the lease holders saw, and what was wrong with it. */
  readonly leases: Omit<LeaseHoldersReport, 'errors'>;
  readonly resultsDir: string;
  readonly error: string | null;
}

/** Every node's Raft status, for reports (a node that does not answer says so). */
async function describeNodes(cluster: ChaosCluster, client: EraftKvClient): Promise<string[]> {
  const lines: string[] = [];
  for (const spec of [...cluster.metaNodes, ...cluster.allKvNodes()]) {
    if (!cluster.local.isRunning(spec.name)) continue;
    try {
      const s = await client.status(spec.grpcAddress, { deadlineMs: 2000 });
      lines.push(
        `  ${spec.name}: ${s.role} term ${s.term} leader ${s.leaderId} commit ${s.commitIndex} ` +
          `applied ${s.appliedIndex} last ${s.lastLogIndex} snapshot ${s.snapshotIndex} ` +
          `members ${(s.membership?.members ?? []).map((m) => `${m.id}${m.learner ? 'L' : ''}`).join(',')}` +
          (s.progress.length > 0
            ? ` progress ${s.progress.map((p) => `${p.id}:${p.state}/${p.matchIndex}/${p.nextIndex}${p.recentActive ? '' : '(inactive)'}`).join(' ')}`
            : ''),
      );
    } catch (err) {
      lines.push(`  ${spec.name}: no answer (${(err as Error).message})`);
    }
  }
  return lines;
}

/**
 * Keys a replica still holds in slots its group does not own, once every move has settled: a kv
 * leader drops a moved slot's keys through its log after the move commits, so this waits up to
 * 60 s for every replica to hold keys only in its group's slots, then lists what is left.
 */
async function leftoverCopies(
  cluster: ChaosCluster,
  nemesis: Nemesis,
  client: EraftKvClient,
): Promise<string[]> {
  let left: string[] = [];
  const clean = await waitUntil(
    async () => {
      const view = await client.cluster({ deadlineMs: 5000 });
      left = [];
      for (const group of cluster.kvGroupIds()) {
        const owned = new Set(view.groups.find((g) => g.id === group)?.slots ?? []);
        for (const m of nemesis.groupMembers(group)) {
          const s = await client.status(m.grpcAddress, { withSlots: true, deadlineMs: 5000 });
          const foreign = s.slotsWithKeys.filter((slot) => !owned.has(slot));
          if (foreign.length > 0)
            left.push(
              `${m.name} (group ${group}) at index ${s.slotsWithKeysIndex}: slots ${formatSlotRanges(foreign)}`,
            );
        }
      }
      return left.length === 0 ? true : undefined;
    },
    60_000,
    'every replica to drop the keys of slots its group gave away',
    500,
  ).catch(() => false);
  return clean ? [] : left;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(o.out, `${stamp}-seed${o.seed}`);
  await mkdir(resultsDir, { recursive: true });
  const dataDir = await mkdtemp(join(tmpdir(), 'eraftkv-chaos-'));
  const lines: string[] = [];
  const log = (line: string): void => {
    lines.push(line);
    if (!process.stderr.isTTY) process.stderr.write(`${line}\n`);
  };
  console.log(
    `chaos: seed ${o.seed}, ${o.durationS} s, nemeses ${o.nemeses.join(',')}${o.tls ? ', mutual TLS' : ''}${o.auth ? ', auth' : ''}, results in ${resultsDir}`,
  );
  console.log(
    `replay this schedule: npm run chaos -- --duration ${o.durationS} --nemesis ${o.nemeses.join(',')} --seed ${o.seed}${o.auth ? ' --auth' : o.tls ? ' --tls' : ''}`,
  );
  // With --tls: certificates for every node (spares included) and one client, in the data dir.
  const spareKvNodes = 3;
  const tls = o.tls
    ? await createLocalTls(
        join(dataDir, 'tls'),
        [
          ...[1, 2, 3].map((id) => ({ name: `meta-${id}`, group: 0, id })),
          ...Array.from({ length: 3 + spareKvNodes }, (_, i) => ({
            name: `kv-1-${i + 1}`,
            group: 1,
            id: i + 1,
          })),
          ...Array.from({ length: o.kvGroups - 1 }, (_, g) => g + 2).flatMap((group) =>
            [1, 2, 3].map((id) => ({ name: `kv-${group}-${id}`, group, id })),
          ),
        ],
        // The nemesis administers as root; the workload's clients are the user "chaos".
        [rootUser, 'chaos'],
      )
    : null;
  const rootTls = tls === null ? undefined : await clientTlsOf(tls, rootUser);
  const clientTls = tls === null ? undefined : await clientTlsOf(tls, 'chaos');
  const cluster = await ChaosCluster.create({
    nodeArgs: tls === null ? undefined : (name) => nodeTlsArgs(tls, name),
    dataDir,
    spareKvNodes,
    kvGroups: o.kvGroups,
    extraArgs: chaosNodeArgs,
    // A move whose copy a fault stalls for a few seconds is rolled back (and its half-imported
    // keys dropped by the target) rather than waited for: both outcomes get exercised.
    metaArgs: ['--slot-import-deadline-ms', '4000'],
  });
  const local = cluster.local;
  const admin = new EraftKvClient({
    endpoints: local.metaEndpoints(),
    deadlineMs: 20_000,
    tls: rootTls,
  });
  const workload = new Workload({
    endpoints: local.metaEndpoints(),
    clients: o.clients,
    keys: o.keys,
    seed: o.seed,
    thinkMsMax: 5,
    deadlineMs: 4000,
    bulkKeys: o.bulkKeys,
    tls: clientTls,
  });
  const watchers = new ChaosWatchers({
    endpoints: local.metaEndpoints(),
    tls: clientTls,
    seed: o.seed,
    prefix: workload.keyPrefixes[0],
    keys: workload.keys.slice(0, Math.max(0, o.watchers - 1)),
    cutEveryMs: o.watchCutMs,
  });
  const leaseHolders = new ChaosLeaseHolders({
    endpoints: local.metaEndpoints(),
    tls: clientTls,
    seed: o.seed,
    holders: o.leaseHolders,
    prefix: 'chaos-lease/',
  });
  const rng = new ChaosRng(o.seed);
  const nemesis = new Nemesis(
    {
      cluster,
      client: admin,
      rng,
      compactionMarginEntries,
      log,
      hotKeys: workload.keys,
      bulkKeys: workload.bulkKeys,
    },
    o.nemeses,
  );
  let summary: ChaosSummary | null = null;
  let progress: NodeJS.Timeout | null = null;
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
  });
  try {
    await local.writeManifest();
    const firstKvNodes = [
      ...cluster.kvNodes.slice(0, 3),
      ...[...cluster.otherGroups.values()].flat(),
    ];
    for (const spec of [...cluster.metaNodes, ...firstKvNodes]) await local.start(spec.name);
    await initializeCluster(admin, local, log);
    if (o.auth) {
      await enableAuth(admin, workload.keyPrefixes);
      log(
        `auth enabled: user "chaos" may read and write ${workload.keyPrefixes.map((p) => `${p}*`).join(', ')}`,
      );
    }
    // Every kv group starts with an even share of the slots (empty: they move at once).
    const view = await admin.cluster();
    const share = Math.ceil(view.slotCount / o.kvGroups);
    for (const g of cluster.otherGroups.keys()) {
      const slots = Array.from({ length: share }, (_, i) => (g - 1) * share + i).filter(
        (s) => s < view.slotCount,
      );
      await admin.moveSlots(g, slots);
      log(`kv group ${g} owns slots ${formatSlotRanges(slots)}`);
    }
    await waitUntil(
      async () => (await admin.put('chaos-ready', 'yes').then(() => true)) || undefined,
      30_000,
      'the first write',
    );

    if (o.watchers > 0) {
      await watchers.start();
      log(`${o.watchers} watcher(s) started on every kv group`);
    }
    if (o.leaseHolders > 0) {
      leaseHolders.start();
      log(`${o.leaseHolders} lease holder(s) started`);
    }
    const started = Date.now();
    const until = started + o.durationS * 1000;
    workload.start();
    progress = setInterval(() => {
      const c = workload.counts;
      const elapsed = Math.round((Date.now() - started) / 1000);
      const line =
        `[chaos ${elapsed}/${o.durationS}s] ops ${c.ok} ok / ${c.fail} fail / ${c.unknown} unknown ` +
        `(${Math.round(c.ok / Math.max(1, elapsed))}/s) | faults: ${nemesis.describeActive()}`;
      if (process.stderr.isTTY)
        process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
      else lines.push(line);
    }, 1000);
    await nemesis.run(until, () => interrupted);
    if (process.stderr.isTTY) process.stderr.write('\n');
    log('healing: every node up, every link open');
    await nemesis.healAll();
    // Let the cluster recover while the clients keep going, then stop them.
    await waitUntil(
      async () => (await admin.put('chaos-healed', 'yes').then(() => true)) || undefined,
      60_000,
      'a write after healing',
    );
    await nemesis.settleMoves(120_000);
    await new Promise((r) => setTimeout(r, 2000));
    await workload.stop();
    // The holders stop keeping their leases alive; each lease not revoked must now expire.
    await leaseHolders.stop();
    await leaseHolders.checkExpiries();
    const { errors: leaseErrors, ...leases } = leaseHolders.report();
    if (progress) clearInterval(progress);
    progress = null;
    const finals = await workload.finalReads();
    for (const f of finals) if (f.error !== null) log(`final read of ${f.key} failed: ${f.error}`);
    const bulkScan = await workload.finalScan();
    if (bulkScan.error !== null) log(`final scan of the bulk keys failed: ${bulkScan.error}`);

    // Every replica of each kv group must reach the same applied index with the same state.
    await nemesis.syncMembers();
    const replicas: ChaosSummary['replicas'] = [];
    let replicasAgree = true;
    for (const group of cluster.kvGroupIds()) {
      const members = nemesis.groupMembers(group);
      const states = await waitUntil(
        async () => {
          const statuses = await Promise.all(
            // A digest reads the whole state, the watch history included: seconds on a busy
            // machine, more than a status call's usual deadline.
            members.map((m) =>
              admin.status(m.grpcAddress, { withDigest: true, deadlineMs: 15_000 }),
            ),
          );
          const indexes = new Set(statuses.map((s) => s.stateDigestIndex));
          if (indexes.size !== 1) return undefined;
          return statuses.map((s, i) => ({
            node: members[i].name,
            group,
            applied: s.stateDigestIndex,
            digest: s.stateDigest,
          }));
        },
        60_000,
        `every replica of kv group ${group} to apply the same index`,
      );
      replicas.push(...states);
      if (new Set(states.map((r) => r.digest)).size !== 1) replicasAgree = false;
      // The same through the group's own consistency check (eraftkv-ctl endpoint hashkv).
      const check = await admin.hashKv(group, { deadlineMs: 60_000 });
      const hashes = new Set(check.replicas.map((r) => r.digest));
      log(
        `hashkv of kv group ${group} at index ${check.index}: ${check.replicas.map((r) => `${r.nodeId}=${r.digest.slice(0, 12) || `none (${r.error})`}`).join(' ')}`,
      );
      if (hashes.size !== 1 || hashes.has('')) replicasAgree = false;
    }
    const copiesLeft = await leftoverCopies(cluster, nemesis, admin);
    const bypasses = o.auth ? await authProblems(local.metaEndpoints(), clientTls, workload) : [];
    for (const b of bypasses) log(`auth: ${b}`);
    // Snapshots that really travelled: sent by leaders and installed by followers (counters of
    // processes that were restarted start over, so these are lower bounds).
    const snapshotCounts = { sent: 0, installed: 0 };
    for (const m of cluster.kvGroupIds().flatMap((g) => nemesis.groupMembers(g))) {
      const text = (await httpGet(m.metricsAddress, '/metrics'))?.body ?? '';
      for (const line of text.split('\n')) {
        if (/^eraftkv_snapshot_send_total\{[^}]*outcome="ok"/.test(line))
          snapshotCounts.sent += Number(line.split(' ').pop());
        if (line.startsWith('eraftkv_snapshot_install_duration_seconds_count')) {
          snapshotCounts.installed += Number(line.split(' ').pop());
        }
      }
    }

    const history = workload.history();
    await saveHistory(join(resultsDir, 'history.jsonl'), history);
    // The watchers catch up with the last acknowledged writes, then are checked against them.
    let watch: WatchersReport = {
      watchers: 0,
      events: 0,
      cuts: 0,
      restarts: 0,
      problems: [],
      errors: new Map(),
    };
    if (o.watchers > 0) {
      await watchers.catchUp(history, 60_000);
      await watchers.stop();
      watch = watchers.report(history);
    }
    const checkStarted = Date.now();
    const check = checkLinearizability(history);
    const checkMs = Date.now() - checkStarted;
    const c = workload.counts;
    // A final read that failed leaves its acknowledged writes unchecked: not a pass.
    const unread = bulkScan.error !== null || finals.some((f) => f.error !== null);
    const verdict: ChaosSummary['verdict'] =
      check.result === 'violation'
        ? 'violation'
        : !replicasAgree
          ? 'replicas-differ'
          : copiesLeft.length > 0
            ? 'copies-left'
            : bypasses.length > 0
              ? 'auth-wrong'
              : watch.problems.length > 0
                ? 'watch-wrong'
                : leases.problems.length > 0
                  ? 'lease-wrong'
                  : nemesis.problems.length > 0
                    ? 'lost-data-counted'
                    : check.result === 'unknown' || unread
                      ? 'unknown'
                      : 'ok';
    summary = {
      seed: o.seed,
      durationS: o.durationS,
      nemeses: o.nemeses,
      verdict,
      operations: { ok: c.ok, fail: c.fail, unknown: c.unknown, recorded: history.length },
      faults: { ...nemesis.stats },
      snapshots: snapshotCounts,
      linearizable: check.result,
      replicas,
      copiesLeft,
      bulk: { keys: workload.bulkKeys.length, found: bulkScan.found },
      watch: {
        watchers: watch.watchers,
        events: watch.events,
        cuts: watch.cuts,
        restarts: watch.restarts,
        problems: watch.problems,
      },
      leases,
      problems: [...nemesis.problems],
      resultsDir,
      error: null,
    };
    const report = [
      `eraftkv chaos run: seed ${o.seed}, ${o.durationS} s of ${o.nemeses.join(', ')}`,
      `verdict: ${verdict}`,
      '',
      `operations: ${c.ok} ok, ${c.fail} failed (refused), ${c.unknown} unknown outcome; ${history.length} recorded per key`,
      `  reads ${c.reads}, writes ${c.writes}, batches ${c.batches}`,
      `  client errors: ${[...c.errors].map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}`,
      `faults: ${Object.entries(nemesis.stats)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
      '',
      `linearizability (${checkMs} ms, ${check.keys} keys, ${check.operations} operations): ${check.result}`,
      formatReport(check),
      '',
      'replicas of the kv groups:',
      ...replicas.map(
        (r) =>
          `  ${r.node} (group ${r.group}): applied ${r.applied}, state ${r.digest.slice(0, 16)}`,
      ),
      replicasAgree ? '  the replicas of each group hold the same state' : '  REPLICAS DIFFER',
      '',
      `slot moves: ${nemesis.stats.slotMoves} asked, ${nemesis.stats.slotMovesCommitted} committed (${nemesis.stats.slotsMoved} slots), ` +
        `${nemesis.stats.slotMovesRolledBack} rolled back, ${nemesis.stats.slotMovesUnknown} left to the meta group`,
      copiesLeft.length === 0
        ? '  every replica holds keys only in the slots its group owns'
        : '  KEYS LEFT IN SLOTS A GROUP DOES NOT OWN:',
      ...copiesLeft.map((l) => `    ${l}`),
      `bulk keys: ${bulkScan.found} of ${workload.bulkKeys.length} found by the final scan` +
        (bulkScan.error === null ? '' : ` (FAILED: ${bulkScan.error})`),
      o.watchers > 0
        ? `watchers: ${watch.watchers}, ${watch.events} events seen, ${watch.cuts} cut by the suite, ${watch.restarts} restarts; ` +
          (watch.problems.length === 0
            ? 'each saw every acknowledged write of its keys once, in order'
            : 'WATCH WRONG:')
        : 'watchers: none',
      ...watch.problems.map((p) => `  ${p}`),
      `  watcher errors: ${[...watch.errors].map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}`,
      o.leaseHolders > 0
        ? `leases: ${leases.leases} granted, ${leases.keepAlives} keep-alives answered, ${leases.revoked} revoked, ` +
          `${leases.expired} expired once left alone, ${leases.lost} lost while kept alive, ${leases.unread} unread at the end; ` +
          (leases.problems.length === 0
            ? 'none expired before its TTL, every one left alone expired'
            : 'LEASES WRONG:')
        : 'lease holders: none',
      ...leases.problems.map((p) => `  ${p}`),
      `  lease holder errors: ${[...leaseErrors].map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}`,
      '',
      `nodes that lost their data dir: ${nemesis.stats.amnesias}, refused as the member they were: ${nemesis.stats.amnesiasRefused}`,
      ...nemesis.problems.map((p) => `  PROBLEM: ${p}`),
      ...(o.auth
        ? [
            bypasses.length === 0
              ? `auth: the workload's user was never refused its own keys, and after the faults still refused ${outsideKeyCount} keys outside its grants (put and get)`
              : 'AUTH WRONG:',
            ...bypasses.map((b) => `  ${b}`),
          ]
        : []),
      '',
      'final reads:',
      ...finals.map((f) => `  ${f.key} = ${f.error ?? JSON.stringify(f.value)}`),
      '',
      'timeline:',
      ...nemesis.events.map(
        (e) => `  ${e.at.toFixed(1).padStart(6)}s ${e.phase.padEnd(5)} ${e.kind}: ${e.description}`,
      ),
      '',
      'log:',
      ...lines.map((l) => `  ${l}`),
    ].join('\n');
    await writeFile(join(resultsDir, 'report.txt'), `${report}\n`);
  } catch (err) {
    const nodes = await describeNodes(cluster, admin).catch(() => []);
    lines.push('nodes when the run failed:', ...nodes);
    summary = {
      seed: o.seed,
      durationS: o.durationS,
      nemeses: o.nemeses,
      verdict: 'error',
      operations: { ...workload.counts, recorded: 0 },
      faults: { ...nemesis.stats },
      snapshots: { sent: 0, installed: 0 },
      linearizable: 'unknown',
      replicas: [],
      copiesLeft: [],
      bulk: { keys: workload.bulkKeys.length, found: 0 },
      watch: { watchers: 0, events: 0, cuts: 0, restarts: 0, problems: [] },
      leases: {
        leases: 0,
        keepAlives: 0,
        revoked: 0,
        expired: 0,
        lost: 0,
        unread: 0,
        problems: [],
      },
      problems: [...nemesis.problems],
      resultsDir,
      error: (err as Error).stack ?? String(err),
    };
    await writeFile(
      join(resultsDir, 'report.txt'),
      `chaos run failed: ${summary.error}\n\n${lines.join('\n')}\n`,
    );
  } finally {
    if (progress) clearInterval(progress);
    await workload.stop().catch(() => undefined);
    await watchers.stop().catch(() => undefined);
    await leaseHolders.stop().catch(() => undefined);
    leaseHolders.close();
    workload.close();
    admin.close();
    await local.stopAll(5000).catch(() => local.killAll());
    await cluster.close();
    // A failed run keeps every node's log next to its report.
    if (summary?.verdict !== 'ok') {
      for (const spec of local.allSpecs()) {
        await copyFile(
          join(dataDir, `${spec.name}.log`),
          join(resultsDir, `${spec.name}.log`),
        ).catch(() => undefined);
      }
    }
    if (o.keepData) console.log(`cluster data kept in ${dataDir}`);
    else await rm(dataDir, { recursive: true, force: true });
  }
  const s = summary;
  if (s === null) throw new Error('the chaos run ended without a summary');
  await writeFile(join(resultsDir, 'summary.json'), `${JSON.stringify(s, null, 2)}\n`);
  console.log(
    `chaos verdict: ${s.verdict} | ${s.operations.ok} ok, ${s.operations.fail} fail, ${s.operations.unknown} unknown | watch ${s.watch.events} events, ${s.watch.problems.length} problems | ` +
      `leases ${s.leases.leases}, ${s.leases.problems.length} problems | ` +
      `faults ${Object.entries(s.faults)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
  );
  if (s.error !== null) console.log(s.error);
  console.log(`report: ${join(resultsDir, 'report.txt')}`);
  return s.verdict === 'ok' ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`chaos failed: ${(err as Error).message}`);
    process.exit(2);
  },
);
