// The slot index of the kv state (state-layout.ts): one entry `s<u16 slot><key>` per data key, so
// that the keys of one slot are one range (counted, exported and deleted by range when slots
// move, docs/slot-migration.md). Applies keep it in step with the data. A state written before
// the index existed has no layout marker and gets its index built once, when it is opened or
// restored from such a replica's snapshot.
import { slotOfKey } from '@eraftkv/protocol';
import type { Logger, StorageEngine, WriteOp } from '@eraftkv/raft-server';
import type { AppliedConfig } from './kv-commands';
import {
  dataEnd,
  dataStart,
  layoutKey,
  layoutVersion,
  readU64,
  slotIndexEnd,
  slotIndexKey,
  slotIndexStart,
  u64,
  userKey,
} from './state-layout';

/** Index entries written per RocksDB batch while building (bounded memory). */
const buildBatchBytes = 4 * 1024 * 1024;

const noBytes = Buffer.alloc(0);

/**
 * Makes sure the state has its slot index: a state marked with this layout has it; a state
 * marked with a newer one is refused (written by a newer eraftkv); an unmarked state gets the
 * index built from its data keys and is then marked. Building is idempotent: a crash before the
 * marker lands builds it again at the next open.
 */
export async function ensureSlotIndex(
  engine: StorageEngine,
  config: AppliedConfig | null,
  logger?: Logger,
): Promise<void> {
  const marker = await engine.get(layoutKey);
  if (marker !== undefined) {
    const version = readU64(marker);
    if (version > layoutVersion) {
      throw new Error(
        `the kv state in ${engine.path} has layout ${version}, newer than the ${layoutVersion} this eraftkv reads; run the eraftkv version that wrote it`,
      );
    }
    if (version === layoutVersion) return;
  }
  let keys = 0;
  if (config !== null) {
    // Entries of an earlier, interrupted build are rewritten with the same bytes.
    let ops: WriteOp[] = [];
    let bytes = 0;
    for await (const [key] of engine.iterate({ gte: dataStart, lt: dataEnd })) {
      const user = userKey(key);
      ops.push({
        type: 'put',
        key: slotIndexKey(slotOfKey(user, config.slotCount), user),
        value: noBytes,
      });
      bytes += user.length + 3;
      keys++;
      if (bytes >= buildBatchBytes) {
        await engine.write(ops, { sync: false });
        ops = [];
        bytes = 0;
      }
    }
    await engine.write(ops, { sync: false });
  }
  await engine.write([{ type: 'put', key: layoutKey, value: u64(layoutVersion) }], { sync: true });
  if (keys > 0) logger?.info('built the slot index of the kv state', { path: engine.path, keys });
}

/** Whether `range` of the state holds no key (one step of an iterator). */
export async function rangeIsEmpty(
  engine: StorageEngine,
  range: { gte: Buffer; lt: Buffer },
): Promise<boolean> {
  const it = engine.iterate({ ...range, limit: 1 })[Symbol.asyncIterator]();
  try {
    return (await it.next()).done === true;
  } finally {
    await it.return?.();
  }
}

/** How many entries the slot index holds (for tests and checks). */
export async function slotIndexSize(engine: StorageEngine): Promise<number> {
  let n = 0;
  for await (const [key] of engine.iterate({ gte: slotIndexStart, lt: slotIndexEnd })) {
    if (key.length >= 3) n++;
  }
  return n;
}
