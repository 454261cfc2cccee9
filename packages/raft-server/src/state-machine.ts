// The state machine interface that both servers implement: the meta server's topology and the kv
// server's data. RaftServer calls it from one place, in log order.
import type { Entry } from '@eraftkv/raft';

export interface StateMachine<Result> {
  /**
   * The index of the last entry applied, as stored with the data it produced (0 when empty).
   * Read once at start: committed entries after it are applied again.
   */
  appliedIndex(): Promise<number>;
  /**
   * Applies committed entries in log order, atomically with storing the index of the last one.
   * Entries of every type arrive (no-ops and membership changes too, so that the applied index
   * moves with them); only normal entries carry commands. Returns one result per entry, in
   * order (the result handed to whoever proposed it; undefined for non-normal entries).
   * Must be deterministic: every replica applying the same entries reaches the same state.
   */
  apply(entries: readonly Entry[]): Promise<(Result | undefined)[]>;
  /**
   * Makes everything applied so far durable (for example a synced RocksDB write of the applied
   * index: the write-ahead log is synced up to it) and returns the applied index it covers. The
   * runtime then compacts the log below that index: the state itself is the snapshot, as in etcd
   * and TiKV, and a restart finds it there without a snapshot file.
   */
  syncApplied(): Promise<number>;
  /**
   * Writes a consistent snapshot of the current state into the file `path` and returns the
   * applied index it covers (only when a follower needs a snapshot sent). Applies may continue while the file is written: the snapshot must
   * capture one point in time (for example through a RocksDB iterator's implicit snapshot).
   */
  writeSnapshot(path: string): Promise<number>;
  /** Replaces the whole state with the snapshot in `path`, which covers `index`. */
  restoreSnapshot(path: string, index: number): Promise<void>;
  /** Releases resources (the RaftServer calls it on stop). */
  close(): Promise<void>;
}
