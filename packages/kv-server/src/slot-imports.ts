// The imports a kv group runs as the target of slot moves (docs/slot-migration.md), applied from
// its log: an import begins on empty slots the group's config lists as Importing, takes the
// source's chunks in order, and ends complete. Its progress record ('m' in state-layout.ts) says
// where the copy stands, so that a new leader resumes it, and is dropped once the config no
// longer lists all its slots as Importing (the move committed or rolled back). The records are
// mirrored in memory, like the dedup table, so that an apply never walks the disk for them.
import type { SlotMoveChunk } from '@eraftkv/protocol';
import type { StorageEngine } from '@eraftkv/raft-server';
import type { ApplyBatch } from './apply-batch';
import { unknownSlot, type DedupTable } from './dedup-table';
import type { AppliedConfig, ImportBegin } from './kv-commands';
import { chunkProblem } from './slot-move-chunk';
import {
  dataKey,
  importEnd,
  importKey,
  importStart,
  slotIndexKey,
  slotIndexRange,
} from './state-layout';

/** Where the import of one move stands. */
export interface ImportProgress {
  readonly version: number;
  readonly source: number;
  readonly slots: readonly number[];
  /** The next chunk starts after `afterKey` in `nextSlot` (an empty key: at its first key). */
  readonly nextSlot: number;
  readonly afterKey: Buffer;
  /** Then with the source's dedup records above this source log index. */
  readonly dedupAfter: number;
  readonly done: boolean;
  /** Keys imported so far. */
  readonly keys: number;
}

/** What applying an import command decided. */
export type ImportOutcome =
  | { readonly ok: true; readonly progress: ImportProgress }
  | { readonly ok: false; readonly message: string };

const noBytes = Buffer.alloc(0);

function encodeProgress(p: ImportProgress): Buffer {
  return Buffer.from(
    JSON.stringify({
      version: p.version,
      source: p.source,
      slots: p.slots,
      nextSlot: p.nextSlot,
      afterKey: p.afterKey.toString('base64'),
      dedupAfter: p.dedupAfter,
      done: p.done,
      keys: p.keys,
    }),
    'utf8',
  );
}

function decodeProgress(value: Buffer): ImportProgress {
  const o = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  const int = (name: string): number => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw new Error(`stored import progress has a bad ${name}: ${String(v)}`);
    return v;
  };
  if (!Array.isArray(o.slots) || typeof o.afterKey !== 'string' || typeof o.done !== 'boolean')
    throw new Error('stored import progress is malformed');
  return {
    version: int('version'),
    source: int('source'),
    slots: (o.slots as unknown[]).map((s) => {
      if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0)
        throw new Error(`stored import progress has a bad slot ${String(s)}`);
      return s;
    }),
    nextSlot: int('nextSlot'),
    afterKey: Buffer.from(o.afterKey, 'base64'),
    dedupAfter: int('dedupAfter'),
    done: o.done,
    keys: int('keys'),
  };
}

/** Whether cursor `b` is past cursor `a` (chunks of one import only ever move it forward). */
function isAfter(a: ImportProgress, b: SlotMoveChunk): boolean {
  if (a.done) return false;
  if (b.done) return true;
  if (b.nextSlot !== a.nextSlot) return b.nextSlot > a.nextSlot;
  const byKey = Buffer.compare(Buffer.from(b.afterKey), a.afterKey);
  if (byKey !== 0) return byKey > 0;
  return b.dedupAfter > a.dedupAfter;
}

export class SlotImports {
  private readonly byKey = new Map<string, ImportProgress>();

  static async load(engine: StorageEngine): Promise<SlotImports> {
    const imports = new SlotImports();
    for await (const [key, value] of engine.iterate({ gte: importStart, lt: importEnd })) {
      imports.byKey.set(key.toString('latin1'), decodeProgress(value));
    }
    return imports;
  }

  /** The import of the move begun at `version` from `source`, if it is in progress here. */
  get(version: number, source: number): ImportProgress | undefined {
    return this.byKey.get(importKey(version, source).toString('latin1'));
  }

  all(): ImportProgress[] {
    return [...this.byKey.values()];
  }

  /** Every slot an import in progress holds (gc leaves them alone). */
  slotsInUse(): Set<number> {
    return new Set(this.all().flatMap((p) => p.slots));
  }

  /**
   * Begins an import: every slot must be Importing in `config` and hold no key here (keys of an
   * earlier, rolled back import are dropped first). Beginning the same import again changes
   * nothing and says where it stands.
   */
  async begin(
    batch: ApplyBatch,
    begin: ImportBegin,
    config: AppliedConfig,
  ): Promise<ImportOutcome> {
    const existing = this.get(begin.version, begin.source);
    if (existing !== undefined) return { ok: true, progress: existing };
    const problem = notImporting(begin.slots, config);
    if (problem !== null) return { ok: false, message: problem };
    for (const slot of begin.slots) {
      if ((await batch.keysIn(slotIndexRange(slot), 1)).length > 0)
        return {
          ok: false,
          message: `slot ${slot} still holds keys from before; they are dropped before an import begins`,
        };
    }
    const progress: ImportProgress = {
      version: begin.version,
      source: begin.source,
      slots: begin.slots,
      nextSlot: begin.slots[0],
      afterKey: noBytes,
      dedupAfter: 0,
      done: false,
      keys: 0,
    };
    this.save(batch, progress);
    return { ok: true, progress };
  }

  /**
   * Applies one chunk of an import in progress: its pairs (with their slot index entries), the
   * source's dedup records (recorded at `index`, this entry's), and the new cursor. A chunk that
   * does not move the cursor forward (a copy proposed twice) changes nothing.
   */
  chunk(
    batch: ApplyBatch,
    chunk: SlotMoveChunk,
    config: AppliedConfig,
    dedup: DedupTable,
    index: number,
  ): ImportOutcome {
    const progress = this.get(chunk.configVersion, chunk.sourceShardId);
    if (progress === undefined)
      return {
        ok: false,
        message: `no import from group ${chunk.sourceShardId} at config version ${chunk.configVersion} is in progress`,
      };
    const stillImporting = notImporting(progress.slots, config);
    if (stillImporting !== null) return { ok: false, message: stillImporting };
    const problem = chunkProblem(chunk, new Set(progress.slots), config.slotCount);
    if (problem !== null) return { ok: false, message: `import chunk refused: ${problem}` };
    if (!isAfter(progress, chunk)) return { ok: true, progress };
    for (const pair of chunk.pairs) {
      batch.put(dataKey(pair.key), Buffer.from(pair.value));
      batch.put(slotIndexKey(pair.slot, pair.key), noBytes);
    }
    for (const record of chunk.dedup) {
      dedup.record(
        batch.ops,
        Buffer.from(record.id),
        index,
        Buffer.from(record.response),
        unknownSlot,
      );
    }
    const next: ImportProgress = {
      ...progress,
      nextSlot: chunk.nextSlot,
      afterKey: Buffer.from(chunk.afterKey),
      dedupAfter: chunk.dedupAfter,
      done: chunk.done,
      keys: progress.keys + chunk.pairs.length,
    };
    this.save(batch, next);
    return { ok: true, progress: next };
  }

  /**
   * The imports in progress holding one of `slots` for a move begun before `version`: once a
   * move of those slots begins at `version`, the moves they served are over.
   */
  earlierOverlapping(version: number, slots: readonly number[]): ImportProgress[] {
    const moving = new Set(slots);
    return this.all().filter(
      (p) => p.version < version && p.slots.some((slot) => moving.has(slot)),
    );
  }

  /** Whether an import holding one of `slots` is in progress for a move begun at `version` or later. */
  laterOverlapping(version: number, slots: readonly number[]): boolean {
    const moving = new Set(slots);
    return this.all().some((p) => p.version >= version && p.slots.some((slot) => moving.has(slot)));
  }

  /** Drops the progress of `imports` (see earlierOverlapping). */
  forget(batch: ApplyBatch, imports: readonly ImportProgress[]): void {
    for (const p of imports) {
      const key = importKey(p.version, p.source);
      this.byKey.delete(key.toString('latin1'));
      batch.del(key);
    }
  }

  /** Drops the progress of imports whose slots `config` no longer lists all as Importing. */
  settle(batch: ApplyBatch, config: AppliedConfig): void {
    for (const [id, progress] of this.byKey) {
      if (notImporting(progress.slots, config) === null) continue;
      this.byKey.delete(id);
      batch.del(Buffer.from(id, 'latin1'));
    }
  }

  private save(batch: ApplyBatch, progress: ImportProgress): void {
    const key = importKey(progress.version, progress.source);
    this.byKey.set(key.toString('latin1'), progress);
    batch.put(key, encodeProgress(progress));
  }
}

/** Why `slots` are not all Importing in `config`, or null. */
function notImporting(slots: readonly number[], config: AppliedConfig): string | null {
  const status = new Map(config.slots.map((s) => [s.id, s.status]));
  for (const slot of slots) {
    const s = status.get(slot);
    if (s !== 'Importing')
      return `slot ${slot} is ${s ?? 'not listed'} at config version ${config.version}, not Importing`;
  }
  return null;
}
