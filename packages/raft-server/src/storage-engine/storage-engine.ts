// Our own small interface to an ordered key-value store on disk. Everything in eraftkv that
// touches RocksDB goes through it, so that the binding (level-rocksdb today, unmaintained since
// 2024) can be replaced in one place.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode } from '@eraftkv/protocol';
import { EraftError } from '../errors';

export interface WriteOp {
  readonly type: 'put' | 'del';
  readonly key: Buffer;
  /** For puts. */
  readonly value?: Buffer;
}

export interface KeyRange {
  readonly gte?: Buffer;
  readonly lt?: Buffer;
  readonly limit?: number;
  readonly reverse?: boolean;
}

export interface StorageEngine {
  /** The directory the engine stores its files in. */
  readonly path: string;
  /** The value of `key`, or undefined when it is absent. */
  get(key: Buffer): Promise<Buffer | undefined>;
  /**
   * The values of `keys` (undefined where absent), read together over one snapshot: one trip to
   * the engine's threads instead of one per key.
   */
  getMany(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]>;
  /**
   * Applies every op atomically. With `sync`, the write is on disk (fsync of the write-ahead log)
   * when the promise resolves; without it, it survives a process crash but maybe not a power cut.
   */
  write(ops: readonly WriteOp[], options: { readonly sync: boolean }): Promise<void>;
  /** Key-value pairs in key-byte order (reverse on request), over an implicit snapshot. */
  iterate(range: KeyRange): AsyncIterable<[Buffer, Buffer]>;
  /**
   * Reads every record with the store's own checksums checked; a damaged one fails with a
   * StorageCorruptionError. Costs a full read of the store: for checks at start, not for serving.
   */
  verifyChecksums(): Promise<void>;
  /** Deletes every key in the range (not atomically with other writes). */
  deleteRange(range: KeyRange): Promise<void>;
  /** The approximate on-disk size of a key range. */
  approximateSizeBytes(range: { gte: Buffer; lt: Buffer }): Promise<number>;
  close(): Promise<void>;
}

/**
 * The engine failed in a way that must stop the node (for example a failed sync). A request
 * that meets it is answered INTERNAL, and it is logged.
 */
export class StorageEngineError extends EraftError {
  override name = 'StorageEngineError';
  constructor(message: string, options?: ErrorOptions, status = grpc.status.INTERNAL) {
    super(ErrorCode.OK, status, message, options);
  }
}

/**
 * The store reported that its files are corrupt (RocksDB's "Corruption:" status). The message
 * names the store's directory, and the file when RocksDB names it. Nothing read from this store
 * can be trusted any more: the node must say it is unhealthy and be replaced. A request that
 * meets it is answered DATA_LOSS.
 */
export class StorageCorruptionError extends StorageEngineError {
  override name = 'StorageCorruptionError';
  constructor(
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options, grpc.status.DATA_LOSS);
  }
}
