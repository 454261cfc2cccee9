// How a log entry is stored: key = 'e' + the index as 8 big-endian bytes (so RocksDB keeps the
// log in index order), value = a CRC-32 of everything after it, the index, the term, the type and
// the data. The index inside the value catches an entry stored under the wrong key.
import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { ErrorCode } from '@eraftkv/protocol';
import { EntryType, type Entry } from '@eraftkv/raft';
import { EraftError, InvalidArgumentError } from '../errors';

export const entryKeyPrefix = 0x65; // 'e'
const headerBytes = 4 + 8 + 8 + 1;

/**
 * The largest term, index or node id the log store holds: numbers are stored in six bytes. The
 * transport refuses larger ones from peers (peerNumberMax), the core never campaigns past it
 * (RaftConfig.termMax), and a write beyond it is refused before it reaches the disk.
 */
export const storedNumberMax = 2 ** 48 - 1;

/**
 * Throws an InvalidArgumentError unless `value` fits the six bytes it is stored in; `field` names
 * it in the error.
 */
export function checkStoredNumber(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > storedNumberMax) {
    throw new InvalidArgumentError(
      `${field} ${value} cannot be stored: the log store holds 0 to 2^48-1`,
    );
  }
  return value;
}

export function entryKey(index: number): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = entryKeyPrefix;
  key.writeUIntBE(0, 1, 2);
  key.writeUIntBE(checkStoredNumber(index, 'entry index'), 3, 6);
  return key;
}

export function indexOfEntryKey(key: Buffer): number {
  return key.readUIntBE(3, 6);
}

/** The first key after every entry key. */
export const entryKeyEnd = Buffer.from([entryKeyPrefix + 1]);

export function encodeEntry(e: Entry): Buffer {
  const value = Buffer.allocUnsafe(headerBytes + e.data.length);
  value.writeUIntBE(0, 4, 2);
  value.writeUIntBE(checkStoredNumber(e.index, 'entry index'), 6, 6);
  value.writeUIntBE(0, 12, 2);
  value.writeUIntBE(checkStoredNumber(e.term, `term of entry ${e.index}`), 14, 6);
  value[20] = e.type;
  value.set(e.data, headerBytes);
  value.writeUInt32BE(crc32(value.subarray(4)), 0);
  return value;
}

/**
 * Thrown when a stored entry fails its checksum or does not belong where it is stored (DATA_LOSS
 * if a request ever met it).
 */
export class CorruptEntryError extends EraftError {
  override name = 'CorruptEntryError';
  constructor(message: string) {
    super(ErrorCode.OK, grpc.status.DATA_LOSS, message);
  }
}

export function decodeEntry(value: Buffer, expectedIndex: number, where: string): Entry {
  if (value.length < headerBytes) {
    throw new CorruptEntryError(
      `${where}: entry ${expectedIndex} is truncated (${value.length} bytes)`,
    );
  }
  const stored = value.readUInt32BE(0);
  const actual = crc32(value.subarray(4));
  if (stored !== actual) {
    throw new CorruptEntryError(
      `${where}: entry ${expectedIndex} fails its checksum (stored ${stored.toString(16)}, computed ${actual.toString(16)})`,
    );
  }
  const index = value.readUIntBE(6, 6);
  if (index !== expectedIndex) {
    throw new CorruptEntryError(`${where}: key ${expectedIndex} holds entry ${index}`);
  }
  const type = value[20] as EntryType;
  if (!(type in EntryType)) {
    throw new CorruptEntryError(`${where}: entry ${expectedIndex} has unknown type ${type}`);
  }
  return {
    index,
    term: value.readUIntBE(14, 6),
    type,
    // A copy, so that the entry does not keep the whole RocksDB buffer alive.
    data: Uint8Array.prototype.slice.call(value, headerBytes),
  };
}
