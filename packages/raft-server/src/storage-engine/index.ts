export {
  describeOpenFailure,
  directorySizeBytes,
  openRocksEngine,
  storageFailure,
} from './rocks-engine';
export {
  StorageCorruptionError,
  StorageEngineError,
  type KeyRange,
  type StorageEngine,
  type WriteOp,
} from './storage-engine';
export { verifyStateBeforeOpen, verifyStoreChecksums } from './verify-store';
