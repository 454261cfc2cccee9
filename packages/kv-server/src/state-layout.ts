// How the data state machine lays out its RocksDB keys. One byte of prefix separates the kinds of
// records, so that the user's keys keep their byte order under their prefix and a snapshot is one
// ordered walk over everything:
//
//   'A' u64 BE lease id, key              -> nothing: the key is attached to the lease
//   'L' u64 BE lease id                   -> the lease's TTL in seconds (u32 BE) (lease-table.ts)
//   'a'                                   -> applied index (u64 BE)
//   'c'                                   -> applied config (JSON of AppliedConfig)
//   'd' u32 len(client_id) client_id u64 command_id -> dedup record: u64 BE log index, then the
//                                            stored ClientOperationResp (its ops); nothing for
//                                            a request of puts only (each put succeeded)
//   'h' u64 BE revision, u16 BE n         -> the n-th change the write at that revision (log
//                                            index) made: the watch history (watch-history.ts),
//                                            written in the same batch as the change and
//                                            trimmed to the last --watch-history-revisions
//   'k' key                               -> value
//   'm' u64 BE version, u64 BE source     -> an import in progress (JSON of ImportProgress,
//                                            data-state-machine.ts): the slots, where the copy
//                                            stands, whether it is complete
//   's' u16 BE slot, key                  -> nothing: the slot index, one entry per data key,
//                                            written and deleted in the same batch as the key,
//                                            so that the keys of one slot are one range
//   'v'                                   -> for each slot served, the config version its period
//                                            of ownership began at (JSON [[slot, version]...];
//                                            absent: every one from before history, 0)
//   'u'                                   -> the auth table (JSON of AuthTableJson), as last
//                                            applied from a kind-6 entry
//   'w'                                   -> the first revision the watch history is complete
//                                            from (u64 BE): where this replica began keeping it
//                                            (a state that predates history), not part of the
//                                            digest, since replicas upgraded at other indexes
//                                            differ in it
//   'x'                                   -> the layout version (u64 BE); a state without it
//                                            predates the slot index, which is built at open
//
// The dedup records are mirrored in memory (dedup-table.ts), which also keeps their index order.

export const appliedKey = Buffer.from('a');
export const configKey = Buffer.from('c');
export const authKey = Buffer.from('u');
export const layoutKey = Buffer.from('x');
export const historyFloorKey = Buffer.from('w');
export const slotSinceKey = Buffer.from('v');
/** The layout this code writes: 1 = with the slot index. */
export const layoutVersion = 1;
const dedupPrefix = 0x64; // 'd'
const dataPrefix = 0x6b; // 'k'
const slotIndexPrefix = 0x73; // 's'
const importPrefix = 0x6d; // 'm'
const historyPrefix = 0x68; // 'h'

/** The first key after every data key ('k' + 1). */
export const dataEnd = Buffer.from([dataPrefix + 1]);
export const dataStart = Buffer.from([dataPrefix]);

/** Writes a non-negative safe integer as 8 bytes big-endian (order-preserving). */
export function u64(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`not a non-negative safe integer: ${value}`);
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(value / 0x1_0000_0000), 0);
  b.writeUInt32BE(value % 0x1_0000_0000, 4);
  return b;
}

export function readU64(b: Buffer, offset = 0): number {
  const value = b.readUInt32BE(offset) * 0x1_0000_0000 + b.readUInt32BE(offset + 4);
  if (!Number.isSafeInteger(value)) throw new RangeError(`stored integer ${value} is not safe`);
  return value;
}

export function dataKey(key: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([dataPrefix]), key]);
}

/** The slot index entry of `key` (a user key) in `slot`. */
export function slotIndexKey(slot: number, key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(3 + key.length);
  out[0] = slotIndexPrefix;
  out.writeUInt16BE(slot, 1);
  out.set(key, 3);
  return out;
}

/** The range of the slot index that holds every key of `slot` (user keys after 3 bytes). */
export function slotIndexRange(slot: number): { gte: Buffer; lt: Buffer } {
  const gte = Buffer.from([slotIndexPrefix, 0, 0]);
  gte.writeUInt16BE(slot, 1);
  // The slot after the last one (65535) is the next prefix: 's' + 1, 0, 0.
  const lt =
    slot === 0xffff
      ? Buffer.from([slotIndexPrefix + 1, 0, 0])
      : Buffer.from([slotIndexPrefix, 0, 0]);
  if (slot !== 0xffff) lt.writeUInt16BE(slot + 1, 1);
  return { gte, lt };
}

/** The progress record of the import of the move begun at `version` from group `source`. */
export function importKey(version: number, source: number): Buffer {
  return Buffer.concat([Buffer.from([importPrefix]), u64(version), u64(source)]);
}

/** The range of every import progress record. */
export const importStart = Buffer.from([importPrefix]);
export const importEnd = Buffer.from([importPrefix + 1]);

/** The range of the whole slot index. */
export const slotIndexStart = Buffer.from([slotIndexPrefix]);
export const slotIndexEnd = Buffer.from([slotIndexPrefix + 1]);

/** The user's key of a slot index entry. */
export function userKeyOfIndex(stored: Buffer): Buffer {
  return stored.subarray(3);
}

/** The user's key of a stored data key. */
export function userKey(stored: Buffer): Buffer {
  return stored.subarray(1);
}

export function dedupKey(clientId: string, commandId: number): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(id.length);
  return Buffer.concat([Buffer.from([dedupPrefix]), len, id, u64(commandId)]);
}

/** The range of every dedup record. */
export const dedupStart = Buffer.from([dedupPrefix]);
export const dedupEnd = Buffer.from([dedupPrefix + 1]);

/** The history record of the `n`-th change made at `revision`. */
export function historyKey(revision: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(11);
  out[0] = historyPrefix;
  u64(revision).copy(out, 1);
  out.writeUInt16BE(n, 9);
  return out;
}

/** The revision of a history record's key. */
export function revisionOfHistoryKey(stored: Buffer): number {
  return readU64(stored, 1);
}

/** The range of every history record. */
export const historyStart = Buffer.from([historyPrefix]);
export const historyEnd = Buffer.from([historyPrefix + 1]);

const leasePrefix = 0x4c; // 'L'
const attachmentPrefix = 0x41; // 'A'

/** The record of lease `id`. */
export function leaseKey(id: number): Buffer {
  return Buffer.concat([Buffer.from([leasePrefix]), u64(id)]);
}

/** The record that attaches `key` (a user key) to lease `id`. */
export function attachmentKey(id: number, key: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([attachmentPrefix]), u64(id), key]);
}

/** The attachment records of lease `id`. */
export function attachmentRange(id: number): { gte: Buffer; lt: Buffer } {
  return {
    gte: Buffer.concat([Buffer.from([attachmentPrefix]), u64(id)]),
    lt: Buffer.concat([Buffer.from([attachmentPrefix]), u64(id + 1)]),
  };
}

export const leaseStart = Buffer.from([leasePrefix]);
export const leaseEnd = Buffer.from([leasePrefix + 1]);
export const attachmentStart = Buffer.from([attachmentPrefix]);
export const attachmentEnd = Buffer.from([attachmentPrefix + 1]);
