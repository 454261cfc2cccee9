export { directorySizeBytes, openRocksEngine } from './rocks-engine';
export {
  StorageEngineError,
  type KeyRange,
  type StorageEngine,
  type WriteOp,
} from './storage-engine';
