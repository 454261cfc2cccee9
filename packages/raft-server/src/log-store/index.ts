export { CorruptEntryError, decodeEntry, encodeEntry, entryKey } from './entry-codec';
export {
  decodeSnapshotMeta,
  encodeSnapshotMeta,
  LogStore,
  LogStoreCorruptError,
  type LogStoreOptions,
} from './log-store';
export { TermRuns } from './term-runs';
