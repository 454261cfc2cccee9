// The data state machine's snapshot file: every RocksDB record of the state (data keys, config,
// dedup table, applied index) in key order, framed so that a truncated or damaged file is refused
// rather than half-loaded:
//
//   "EKVSNAP1"                                  magic and format version
//   { u32 BE key length, key, u32 BE value length, value }*
//   u32 0xFFFFFFFF, u64 BE record count, u32 BE CRC-32 of every record byte
//
// The snapshot store adds its own whole-file checksum for transfers; this trailer also guards a
// file written locally and read back after a crash.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { readU64, u64 } from './state-layout';

const magic = Buffer.from('EKVSNAP1');
const endMarker = 0xffff_ffff;
/** Records are gathered into writes of about this size. */
const writeChunkBytes = 1024 * 1024;

export class SnapshotFormatError extends Error {
  override name = 'SnapshotFormatError';
}

/** Writes `records` into a new file at `path`; returns how many were written. */
export async function writeSnapshotFile(
  path: string,
  records: AsyncIterable<readonly [Buffer, Buffer]>,
): Promise<number> {
  const handle = await open(path, 'w');
  try {
    let pending: Buffer[] = [magic];
    let pendingBytes = magic.length;
    let crc = 0;
    let count = 0;
    const flush = async (): Promise<void> => {
      const chunk = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await handle.write(chunk);
    };
    for await (const [key, value] of records) {
      const header = Buffer.alloc(4);
      header.writeUInt32BE(key.length);
      const valueHeader = Buffer.alloc(4);
      valueHeader.writeUInt32BE(value.length);
      for (const part of [header, key, valueHeader, value]) {
        // zlib's crc32 returns 0 for a buffer without memory (RocksDB hands empty values out
        // that way) instead of the running CRC, so empty parts are skipped.
        if (part.length > 0) crc = crc32(part, crc);
        pending.push(part);
        pendingBytes += part.length;
      }
      count++;
      if (pendingBytes >= writeChunkBytes) await flush();
    }
    const trailer = Buffer.alloc(16);
    trailer.writeUInt32BE(endMarker, 0);
    u64(count).copy(trailer, 4);
    trailer.writeUInt32BE(crc, 12);
    pending.push(trailer);
    pendingBytes += trailer.length;
    await flush();
    return count;
  } finally {
    await handle.close();
  }
}

/**
 * Reads the records of a snapshot file in order. Throws a SnapshotFormatError on a bad magic, a
 * truncated file, bytes after the trailer, or a count or checksum that does not match; a caller
 * that loads records as they come must therefore treat the load as incomplete until the
 * iteration ends without an error.
 */
export async function* readSnapshotFile(path: string): AsyncGenerator<[Buffer, Buffer]> {
  let buffer: Buffer = Buffer.alloc(0);
  let offset = 0;
  let sawMagic = false;
  let crc = 0;
  let count = 0;
  let ended = false;
  const available = (): number => buffer.length - offset;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    if (ended) throw new SnapshotFormatError(`${path}: bytes after the end of the snapshot`);
    buffer =
      offset < buffer.length
        ? Buffer.concat([buffer.subarray(offset), chunk as Buffer])
        : (chunk as Buffer);
    offset = 0;
    if (!sawMagic) {
      if (available() < magic.length) continue;
      if (!buffer.subarray(0, magic.length).equals(magic))
        throw new SnapshotFormatError(`${path}: not a kv snapshot file (bad magic)`);
      sawMagic = true;
      offset = magic.length;
    }
    for (;;) {
      if (available() < 4) break;
      const keyLength = buffer.readUInt32BE(offset);
      if (keyLength === endMarker) {
        if (available() < 16) break;
        const storedCount = readU64(buffer, offset + 4);
        const storedCrc = buffer.readUInt32BE(offset + 12);
        if (storedCount !== count || storedCrc !== crc) {
          throw new SnapshotFormatError(
            `${path}: the trailer says ${storedCount} records with CRC ${storedCrc}, the file holds ${count} with CRC ${crc}`,
          );
        }
        ended = true;
        offset += 16;
        if (available() > 0)
          throw new SnapshotFormatError(`${path}: bytes after the end of the snapshot`);
        break;
      }
      if (available() < 4 + keyLength + 4) break;
      const valueLength = buffer.readUInt32BE(offset + 4 + keyLength);
      const recordBytes = 8 + keyLength + valueLength;
      if (available() < recordBytes) break;
      const record = buffer.subarray(offset, offset + recordBytes);
      crc = crc32(record, crc);
      const key = Buffer.from(record.subarray(4, 4 + keyLength));
      const value = Buffer.from(record.subarray(8 + keyLength));
      offset += recordBytes;
      count++;
      yield [key, value];
    }
  }
  if (!ended) throw new SnapshotFormatError(`${path}: the snapshot is truncated`);
}
