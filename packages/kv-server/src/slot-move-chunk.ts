// The chunks a slot move copies from the source group to the target (docs/slot-migration.md):
// their checksum, and the checks an import applies before it writes a byte. A chunk carries
// keys of the moving slots in order of slot and key, then the source's dedup records, and says
// where the next chunk starts, so that a broken copy resumes where its last applied chunk ended.
import { crc32 } from 'node:zlib';
import { slotOfKey, type SlotMoveChunk } from '@eraftkv/protocol';

/** The CRC-32 a chunk must carry: over every pair and record, each field length-prefixed. */
export function chunkChecksum(chunk: Pick<SlotMoveChunk, 'pairs' | 'dedup'>): number {
  let crc = 0;
  const length = Buffer.alloc(4);
  const field = (bytes: Uint8Array): void => {
    length.writeUInt32BE(bytes.length);
    crc = crc32(length, crc);
    // Not for an empty field: zlib.crc32 of an empty Buffer that RocksDB's binding made (no
    // backing memory) returns 0 instead of the running value, so the two sides would disagree.
    if (bytes.length > 0) crc = crc32(bytes, crc);
  };
  for (const pair of chunk.pairs) {
    length.writeUInt32BE(pair.slot);
    crc = crc32(length, crc);
    field(pair.key);
    field(pair.value);
  }
  for (const record of chunk.dedup) {
    field(record.id);
    field(record.response);
  }
  return crc;
}

/**
 * Why `chunk` cannot be imported into slots `importing` of a `slotCount`-slot cluster, or null:
 * a checksum that does not match, a pair of another slot or of a slot its key does not hash to,
 * an empty key, a dedup record whose id is not one (see state-layout.ts), a cursor out of range.
 */
export function chunkProblem(
  chunk: SlotMoveChunk,
  importing: ReadonlySet<number>,
  slotCount: number,
): string | null {
  const crc = chunkChecksum(chunk);
  if (crc !== chunk.crc32)
    return `checksum mismatch: the chunk says ${chunk.crc32}, its contents give ${crc}`;
  for (const [i, pair] of chunk.pairs.entries()) {
    if (!importing.has(pair.slot)) return `pair ${i} is of slot ${pair.slot}, not being imported`;
    if (pair.key.length === 0) return `pair ${i} has an empty key`;
    const slot = slotOfKey(pair.key, slotCount);
    if (slot !== pair.slot)
      return `pair ${i} says slot ${pair.slot} but its key is in slot ${slot}`;
  }
  for (const [i, record] of chunk.dedup.entries()) {
    if (!isDedupId(record.id)) return `dedup record ${i} has a malformed id`;
  }
  if (!Number.isSafeInteger(chunk.nextSlot) || chunk.nextSlot < 0 || chunk.nextSlot > slotCount)
    return `next_slot ${chunk.nextSlot} is out of range`;
  if (!Number.isSafeInteger(chunk.dedupAfter) || chunk.dedupAfter < 0)
    return `dedup_after ${chunk.dedupAfter} is out of range`;
  return null;
}

/** 'd', u32 length, that many bytes of client id, u64 command id (state-layout.ts dedupKey). */
function isDedupId(id: Uint8Array): boolean {
  if (id.length < 13 || id[0] !== 0x64) return false;
  const b = Buffer.from(id.buffer, id.byteOffset, id.byteLength);
  return b.readUInt32BE(1) === id.length - 13;
}
