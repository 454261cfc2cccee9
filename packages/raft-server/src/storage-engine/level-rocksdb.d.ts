// The small part of level-rocksdb (levelup + encoding-down over the `rocksdb` binding) that
// rocks-engine.ts uses. The package ships no types of its own.
declare module 'level-rocksdb' {
  namespace level {
    interface LevelBatchOp {
      type: 'put' | 'del';
      key: Buffer;
      value?: Buffer;
    }
    interface LevelIteratorOptions {
      gte?: Buffer;
      gt?: Buffer;
      lte?: Buffer;
      lt?: Buffer;
      limit?: number;
      reverse?: boolean;
      keys?: boolean;
      values?: boolean;
    }
    interface LevelIterator extends AsyncIterable<[Buffer, Buffer]> {
      end(callback: (err?: Error) => void): void;
    }
    /** The `rocksdb` binding under levelup: its underscore methods skip levelup's layers. */
    interface RocksBinding {
      _batch(
        ops: readonly LevelBatchOp[],
        options: { sync: boolean },
        callback: (err: Error | null) => void,
      ): void;
      _get(
        key: Buffer,
        options: { asBuffer: true; fillCache: boolean },
        callback: (err: Error | null, value: Buffer) => void,
      ): void;
      /** Values of `keys` read over one snapshot (undefined: absent), in one threadpool task. */
      _getMany(
        keys: readonly Buffer[],
        options: { asBuffer: true; fillCache: boolean },
        callback: (err: Error | null, values: (Buffer | undefined)[]) => void,
      ): void;
      approximateSize(
        start: Buffer,
        end: Buffer,
        callback: (err: Error | null, size: number) => void,
      ): void;
      compactRange(start: Buffer, end: Buffer, callback: (err: Error | null) => void): void;
    }
    interface LevelDb {
      readonly db: { readonly db: RocksBinding };
      get(key: Buffer): Promise<Buffer>;
      batch(ops: LevelBatchOp[], options: { sync: boolean }): Promise<void>;
      iterator(options: LevelIteratorOptions): LevelIterator;
      clear(options: LevelIteratorOptions): Promise<void>;
      close(): Promise<void>;
    }
    interface LevelOptions {
      keyEncoding: 'binary';
      valueEncoding: 'binary';
      createIfMissing?: boolean;
      errorIfExists?: boolean;
    }
  }
  function level(
    location: string,
    options: level.LevelOptions,
    callback: (err: Error | null, db: level.LevelDb) => void,
  ): level.LevelDb;
  export = level;
}
