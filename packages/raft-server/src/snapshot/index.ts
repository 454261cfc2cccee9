export {
  checksumFile,
  SnapshotStore,
  type IncomingBlock,
  type ReceiveResult,
  type SnapshotFile,
} from './snapshot-store';
