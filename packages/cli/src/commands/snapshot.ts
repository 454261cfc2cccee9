// snapshot save / status / load: backups of a whole cluster (the format is backup-file.ts in
// @eraftkv/protocol; building a new cluster's data dirs from a backup is eraftkv-utl snapshot
// restore, which works on files, not through a cluster).
//
// save: the topology (cluster id, slot count, every kv group's slots), then each kv group's data
// read by its leader at one applied index after a ReadIndex (every write acknowledged before the
// group's part began is in it), streamed chunk by chunk into FILE.part, renamed to FILE once
// complete. Each group's part is consistent in itself; parts of different groups are read one
// after another, so a write made between two groups' parts may be in one and not the other (as
// with any per-shard backup): stop writers first for a copy consistent across groups.
//
// load: checks the whole file first (nothing is written from a damaged backup), then loads it
// into a running, empty cluster: initialises it with the backup's slot count if needed, gives each
// registered kv group the slots its namesake owned, and writes every key through the groups.
import { SingleBar } from 'cli-progress';
import type { Argv } from 'yargs';
import { ClusterError, type EraftKvClient } from '@eraftkv/client';
import { ErrorCode, formatSlotRanges } from '@eraftkv/protocol';
import {
  BackupWriter,
  backupFormat,
  encodeBackupPairs,
  readBackup,
  BackupRecordKind,
  type BackupHeader,
  type BackupGroupBegin,
  type BackupGroupEnd,
} from '@eraftkv/protocol';
import type { Context, Runner } from '../context';
import { exitCodes } from '../exit-codes';
import { UsageError } from '../exit-codes';
import { json, renderTable } from '../output';

/**
 * Shows progress on stderr: on a terminal a bar (of `total` when it is known, else of the groups
 * done) with keys, MiB and keys/s; elsewhere (logs, pipes) a line at most twice a second.
 */
class Progress {
  private last = 0;
  private shown = '';
  private readonly started = Date.now();
  private readonly bar: SingleBar | null;
  constructor(
    private readonly ctx: Context,
    private readonly what: string,
    total: { readonly count: number; readonly unit: 'keys' | 'groups' },
  ) {
    this.bar =
      process.stderr.isTTY === true
        ? new SingleBar({
            format: `${what} [{bar}] {value}/{total} ${total.unit} | {keys} keys, {mib} MiB | {rate} keys/s`,
            hideCursor: true,
            stream: process.stderr,
          })
        : null;
    this.bar?.start(total.count, 0, { keys: 0, mib: '0.0', rate: 0 });
  }
  /** `done` is the bar's value, out of the total's count (groups or keys done). */
  update(done: number, keys: number, bytes: number, force = false): void {
    const now = Date.now();
    const mib = (bytes / 1024 / 1024).toFixed(1);
    if (this.bar !== null) {
      const rate = Math.round(keys / Math.max(0.001, (now - this.started) / 1000));
      this.bar.update(done, { keys, mib, rate });
      if (force) this.bar.stop();
      return;
    }
    if (!force && now - this.last < 500) return;
    this.last = now;
    const line = `${this.what}: ${keys} keys, ${mib} MiB\n`;
    if (line !== this.shown) this.ctx.io.err(line);
    this.shown = line;
  }
  /** Ends the bar (the cursor comes back) when the work fails. */
  stop(): void {
    this.bar?.stop();
  }
}

/** Load's writes in flight at once, and the most keys and bytes per write. */
const loadWritesInFlight = 16;
const loadBatchKeys = 100;
const loadBatchBytes = 512 * 1024;

async function save(ctx: Context, path: string): Promise<number> {
  const client = ctx.client();
  const view = await client.cluster();
  const groups = view.groups.filter((g) => g.id > 0);
  if (groups.length === 0) throw new UsageError('the cluster has no kv group to back up');
  const clusterId = await clusterIdOf(
    client,
    view.groups.filter((g) => g.id === 0).flatMap((g) => g.servers.map((n) => n.address)),
  );
  const started = Date.now();
  const writer = await BackupWriter.create(path);
  const progress = new Progress(ctx, `saving to ${path}`, { count: groups.length, unit: 'groups' });
  let keys = 0;
  let dataBytes = 0;
  const parts: (BackupGroupEnd & { index: number })[] = [];
  try {
    const header: BackupHeader = {
      format: backupFormat,
      createdAt: new Date().toISOString(),
      clusterId,
      slotCount: view.slotCount,
      configVersion: view.configVersion,
      groups: groups.map((g) => ({ id: g.id, slots: [...g.slots].sort((a, b) => a - b) })),
    };
    await writer.json(BackupRecordKind.Header, header);
    for (const g of groups) {
      let groupKeys = 0;
      let groupBytes = 0;
      let begun: BackupGroupBegin | null = null;
      for await (const chunk of client.backup(g.id, { deadlineMs: 30_000 })) {
        if (begun === null) {
          begun = {
            group: g.id,
            index: chunk.index,
            configVersion: chunk.configVersion,
            slots: chunk.slots,
          };
          // The header's slot map is the one a restore rebuilds: a group whose part holds other
          // slots (a move finished between the header and this part) would restore keys where
          // the map does not send them.
          const listed = header.groups.find((h) => h.id === g.id)?.slots ?? [];
          const read = [...chunk.slots].sort((a, b) => a - b);
          if (formatSlotRanges(read) !== formatSlotRanges(listed)) {
            throw new Error(
              `group ${g.id} served slots ${formatSlotRanges(read) || 'none'} when its part was read, but ${formatSlotRanges(listed) || 'none'} when the save began: ` +
                'slots moved during the save (eraftkv-ctl group list shows moves in progress); save again once they are done',
            );
          }
          await writer.json(BackupRecordKind.Group, begun);
        }
        if (chunk.kvs.length > 0) {
          const payload = encodeBackupPairs(chunk.kvs);
          await writer.record(BackupRecordKind.Data, payload);
          groupKeys += chunk.kvs.length;
          groupBytes += payload.length;
          progress.update(parts.length, keys + groupKeys, writer.bytes);
        }
        if (chunk.done && chunk.keys !== groupKeys)
          throw new Error(
            `group ${g.id} said it sent ${chunk.keys} keys, but ${groupKeys} arrived`,
          );
      }
      if (begun === null) throw new Error(`group ${g.id} sent nothing`);
      const end: BackupGroupEnd = { group: g.id, keys: groupKeys, bytes: groupBytes };
      await writer.json(BackupRecordKind.GroupEnd, end);
      parts.push({ ...end, index: begun.index });
      keys += groupKeys;
      dataBytes += groupBytes;
    }
    await writer.json(BackupRecordKind.Trailer, { groups: parts.length, keys, bytes: dataBytes });
    await writer.finish();
  } catch (err) {
    progress.stop();
    await writer.abandon();
    throw err;
  }
  const seconds = Math.max(0.001, (Date.now() - started) / 1000);
  progress.update(parts.length, keys, writer.bytes, true);
  const summary = {
    path,
    groups: parts,
    keys,
    bytes: writer.bytes,
    seconds: Number(seconds.toFixed(3)),
    keysPerSecond: Math.round(keys / seconds),
    mibPerSecond: Number((writer.bytes / 1024 / 1024 / seconds).toFixed(2)),
  };
  if (ctx.writeOut === 'json') ctx.io.out(json(summary));
  else
    ctx.io.out(
      `Snapshot saved at ${path}: ${parts.length} group${parts.length === 1 ? '' : 's'}, ${keys} keys, ${writer.bytes} bytes in ${summary.seconds} s ` +
        `(${summary.keysPerSecond} keys/s, ${summary.mibPerSecond} MiB/s)\n`,
    );
  return exitCodes.success;
}

/** The cluster id the first meta node that answers reports. */
async function clusterIdOf(
  client: EraftKvClient,
  metaAddresses: readonly string[],
): Promise<string> {
  const failures: string[] = [];
  for (const address of metaAddresses) {
    try {
      return (await client.status(address, { deadlineMs: 5000 })).clusterId;
    } catch (err) {
      failures.push(`${address}: ${(err as Error).message}`);
    }
  }
  throw new Error(`no meta node told its cluster id (${failures.join('; ') || 'none listed'})`);
}

async function status(ctx: Context, path: string): Promise<number> {
  let header: BackupHeader | null = null;
  const groups: (BackupGroupBegin & { keys: number; bytes: number })[] = [];
  const trailer = await readBackup(path, (record) => {
    if (record.kind === BackupRecordKind.Header) header = record.header;
    if (record.kind === BackupRecordKind.Group) groups.push({ ...record.group, keys: 0, bytes: 0 });
    if (record.kind === BackupRecordKind.GroupEnd) {
      const g = groups[groups.length - 1];
      groups[groups.length - 1] = { ...g, keys: record.end.keys, bytes: record.end.bytes };
    }
  });
  const h = header as BackupHeader | null;
  if (h === null) throw new Error(`${path}: no header`);
  if (ctx.writeOut === 'json') {
    ctx.io.out(json({ path, verdict: 'ok', header: h, groups, trailer }));
  } else if (ctx.writeOut === 'table') {
    ctx.io.out(
      renderTable(
        ['GROUP', 'INDEX', 'SLOTS', 'KEYS', 'BYTES'],
        groups.map((g) => [
          String(g.group),
          String(g.index),
          formatSlotRanges(g.slots),
          String(g.keys),
          String(g.bytes),
        ]),
      ),
    );
    ctx.io.out(
      `checksums ok; ${trailer.keys} keys in ${trailer.groups} groups, ${h.slotCount} slots\n`,
    );
  } else {
    ctx.io.out(
      `${path}: checksums ok, format ${h.format}, cluster "${h.clusterId}", taken ${h.createdAt}, ${h.slotCount} slots, config version ${h.configVersion}\n`,
    );
    for (const g of groups)
      ctx.io.out(
        `  group ${g.group}: ${g.keys} keys, ${g.bytes} bytes, at index ${g.index}, slots ${formatSlotRanges(g.slots)}\n`,
      );
    ctx.io.out(`  total: ${trailer.keys} keys, ${trailer.bytes} bytes\n`);
  }
  return exitCodes.success;
}

/** Runs `work` for each item with at most `limit` at once. */
class Limiter {
  private running = new Set<Promise<void>>();
  private failure: Error | null = null;
  constructor(private readonly limit: number) {}
  /** Throws the first failure of the work added so far. */
  private check(): void {
    const failure = this.failure;
    if (failure !== null) throw failure;
  }
  async add(work: () => Promise<void>): Promise<void> {
    this.check();
    while (this.running.size >= this.limit) await Promise.race(this.running);
    this.check();
    const p: Promise<void> = work()
      .catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }
  async done(): Promise<void> {
    await Promise.all(this.running);
    this.check();
  }
}

async function load(ctx: Context, path: string): Promise<number> {
  // 1. The whole file is checked before anything is written.
  let header: BackupHeader | null = null;
  const checked = await readBackup(path, (record) => {
    if (record.kind === BackupRecordKind.Header) header = record.header;
  });
  const h = header as BackupHeader | null;
  if (h === null) throw new Error(`${path}: no header`);
  const client = ctx.client();
  // 2. The target: initialised with the same slot count, every group registered, no key held.
  let view = await client.cluster().catch((err: unknown) => {
    if (err instanceof ClusterError && err.code === ErrorCode.NOT_INITIALIZED) return null;
    throw err;
  });
  if (view === null || view.slotCount === 0) {
    view = await client.initCluster(h.slotCount);
    ctx.io.err(`load: cluster initialised with ${h.slotCount} slots\n`);
  }
  if (view.slotCount !== h.slotCount)
    throw new UsageError(
      `the target cluster has ${view.slotCount} slots and the backup ${h.slotCount}: load it into a new cluster`,
    );
  const missing = h.groups.filter((g) => !view!.groups.some((t) => t.id === g.id));
  if (missing.length > 0)
    throw new UsageError(
      `the target cluster has no kv group ${missing.map((g) => g.id).join(', ')}: register each first (eraftkv-ctl group add <gid> <addresses>)`,
    );
  const held = await client.scan(Buffer.alloc(0), undefined, { limit: 1 });
  if (held.kvs.length > 0)
    throw new UsageError(
      `the target cluster already holds keys (${JSON.stringify(held.kvs[0].key.toString())}...): load needs an empty cluster`,
    );
  // 3. The backup's slot map.
  for (const g of h.groups) {
    const owned = new Set(view.groups.find((t) => t.id === g.id)?.slots ?? []);
    const toMove = g.slots.filter((s) => !owned.has(s));
    if (toMove.length > 0) {
      view = await client.moveSlots(g.id, toMove, { deadlineMs: 120_000 });
      ctx.io.err(`load: group ${g.id} owns slots ${formatSlotRanges(g.slots)}\n`);
    }
  }
  // 4. Every key, in batches of one group's keys.
  const started = Date.now();
  const progress = new Progress(ctx, `loading ${path}`, { count: checked.keys, unit: 'keys' });
  const limiter = new Limiter(loadWritesInFlight);
  let keys = 0;
  let bytes = 0;
  const write = (pairs: { key: Buffer; value: Buffer }[]): Promise<void> =>
    limiter.add(async () => {
      await client.batch(
        pairs.map((p) => ({ type: 'put' as const, key: p.key, value: p.value })),
        { deadlineMs: 60_000 },
      );
      keys += pairs.length;
      for (const p of pairs) bytes += p.key.length + p.value.length;
      progress.update(keys, keys, bytes);
    });
  const loading = readBackup(path, async (record) => {
    if (record.kind !== BackupRecordKind.Data) return;
    let batch: { key: Buffer; value: Buffer }[] = [];
    let batchBytes = 0;
    for (const p of record.pairs) {
      batch.push(p);
      batchBytes += p.key.length + p.value.length;
      if (batch.length >= loadBatchKeys || batchBytes >= loadBatchBytes) {
        await write(batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length > 0) await write(batch);
  });
  try {
    await loading;
    await limiter.done();
  } catch (err) {
    progress.stop();
    throw err;
  }
  if (keys !== checked.keys)
    throw new Error(`restored ${keys} keys, but the backup holds ${checked.keys}`);
  const seconds = Math.max(0.001, (Date.now() - started) / 1000);
  progress.update(keys, keys, bytes, true);
  const summary = {
    path,
    keys,
    bytes,
    seconds: Number(seconds.toFixed(3)),
    keysPerSecond: Math.round(keys / seconds),
    mibPerSecond: Number((bytes / 1024 / 1024 / seconds).toFixed(2)),
  };
  if (ctx.writeOut === 'json') ctx.io.out(json(summary));
  else
    ctx.io.out(
      `Loaded ${keys} keys (${bytes} bytes) into ${h.groups.length} group${h.groups.length === 1 ? '' : 's'} in ${summary.seconds} s ` +
        `(${summary.keysPerSecond} keys/s, ${summary.mibPerSecond} MiB/s)\n`,
    );
  return exitCodes.success;
}

export function snapshotCommands(yargs: Argv, run: Runner): Argv {
  return yargs.command(
    'snapshot',
    'Back up a cluster to a file: save, status, load (restore: eraftkv-utl)',
    (y) =>
      y
        .command(
          'save <file>',
          "Save the topology and every kv group's data (each group read at one linearizable point) to <file>",
          (yy) =>
            yy
              .positional('file', {
                type: 'string',
                demandOption: true,
                describe: 'the backup to write',
              })
              .example('$0 snapshot save ./backup.ekv', ''),
          run((ctx, args) => save(ctx, String(args.file))),
        )
        .command(
          'status <file>',
          'Check a backup (every checksum and count) and show its groups, keys and bytes',
          (yy) =>
            yy
              .positional('file', {
                type: 'string',
                demandOption: true,
                describe: 'the backup to check',
              })
              .example('$0 snapshot status ./backup.ekv -w table', ''),
          run((ctx, args) => status(ctx, String(args.file))),
        )
        .command(
          'load <file>',
          'Load a backup into a running, empty cluster at --endpoints (its kv groups registered, with the ids of the backup): checks the whole file first, then sets the slot map and writes every key through Raft',
          (yy) =>
            yy
              .positional('file', {
                type: 'string',
                demandOption: true,
                describe: 'the backup to load',
              })
              .example('$0 --endpoints new-meta:8088 snapshot load ./backup.ekv', ''),
          run((ctx, args) => load(ctx, String(args.file))),
        )
        .command(
          'restore <file>',
          'Not here: building a new cluster from a backup is eraftkv-utl snapshot restore (it writes data dirs, offline)',
          (yy) => yy.positional('file', { type: 'string', describe: 'the backup' }),
          run(() => {
            throw new UsageError(
              'snapshot restore builds the data dirs of a new cluster and runs without one: ' +
                'eraftkv-utl snapshot restore FILE --layout LAYOUT (eraftkv-utl --help). ' +
                'To write a backup into a running, empty cluster instead: eraftkv-ctl snapshot load FILE',
            );
          }),
        )
        .demandCommand(1, 'snapshot needs a subcommand: save, status or load'),
    () => {},
  );
}
