// The state a kv replica starts from when its data dir is built from a backup (eraftkv-utl
// snapshot restore): a snapshot file in the data state machine's own format (snapshot-file.ts,
// the records of state-layout.ts) holding the applied index, the group's config, the layout
// marker, and every key with its slot index entry. The replica loads it through the same
// restoreSnapshot as a snapshot sent by a leader.
import { slotOfKey } from '@eraftkv/protocol';
import type { AppliedConfig } from './kv-commands';
import { writeSnapshotFile } from './snapshot-file';
import {
  appliedKey,
  configKey,
  dataKey,
  layoutKey,
  layoutVersion,
  slotIndexKey,
  u64,
} from './state-layout';

/** A key of the seeded state that its group's config does not let it hold. */
export class SeedStateError extends Error {
  override name = 'SeedStateError';
}

export interface SeedPair {
  readonly key: Buffer;
  readonly value: Buffer;
}

/**
 * Writes the snapshot file of a state at applied `index` with `config` and the keys of `pairs`
 * (in any order). Every key must be in a slot the config lists as Running: a key the group would
 * not serve is refused, naming it, rather than restored where no one can read it.
 */
export async function writeSeedSnapshot(
  path: string,
  index: number,
  config: AppliedConfig,
  pairs: AsyncIterable<readonly SeedPair[]>,
): Promise<{ keys: number; bytes: number }> {
  const served = new Set(config.slots.filter((s) => s.status === 'Running').map((s) => s.id));
  const empty = Buffer.alloc(0);
  const counts = { keys: 0, bytes: 0 };
  async function* records(): AsyncGenerator<readonly [Buffer, Buffer]> {
    yield [appliedKey, u64(index)];
    yield [configKey, Buffer.from(JSON.stringify(config), 'utf8')];
    yield [layoutKey, u64(layoutVersion)];
    for await (const batch of pairs) {
      for (const { key, value } of batch) {
        if (key.length === 0) throw new SeedStateError('an empty key');
        const slot = slotOfKey(key, config.slotCount);
        if (!served.has(slot)) {
          throw new SeedStateError(
            `key ${JSON.stringify(key.toString('utf8'))} is in slot ${slot}, which the group does not own`,
          );
        }
        yield [dataKey(key), value];
        yield [slotIndexKey(slot, key), empty];
        counts.keys++;
        counts.bytes += key.length + value.length;
      }
    }
  }
  await writeSnapshotFile(path, records());
  return counts;
}
