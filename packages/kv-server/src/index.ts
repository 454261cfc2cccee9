// @eraftkv/kv-server: the data state machine of a kv group on @eraftkv/raft-server, and the KvServer that
// the eraftkv-kv binary runs (exported for tests and tools).
export { ConfigWatcher, type ConfigWatcherOptions } from './config-watcher';
export {
  DataStateMachine,
  type DataStateMachineOptions,
  type KvApplyResult,
  type KvReadResult,
  type HistoryRead,
  watchHistoryRevisionsDefault,
} from './data-state-machine';
export { defaultWatchLimits, watchHandler, type WatchLimits } from './watch-service';
export {
  CommandDecodeError,
  CommandKind,
  configFromTopology,
  decodeCommand,
  encodeClientRequest,
  encodeConfig,
  encodeDrop,
  encodeImportBegin,
  encodeImportChunk,
  parseConfigJson,
  slotStatusFromName,
  slotStatusName,
  type AppliedConfig,
  type ConfigServer,
  type ConfigSlot,
  type Drop,
  type ImportBegin,
  type KvCommand,
  type SlotStatusName,
} from './kv-commands';
export { parseKvCommandLine, UsageError, type KvCommandLine } from './kv-node-options';
export { KvServer, type KvServerOptions } from './kv-server';
export { kvServiceHandlers, type KvServiceHandlers, type KvServiceOptions } from './kv-service';
export {
  checkEntrySize,
  defaultKvLimits,
  effectiveScanLimit,
  entryBytesMaxFor,
  kvLimits,
  scanLimitDefault,
  validateClientRequest,
  type KvLimits,
  type RequestKind,
} from './request-validation';
export { SeedStateError, writeSeedSnapshot, type SeedPair } from './seed-state';
export { readSnapshotFile, SnapshotFormatError, writeSnapshotFile } from './snapshot-file';
