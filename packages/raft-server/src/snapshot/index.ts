export {
  SnapshotCoordinator,
  snapshotBlockFromWire,
  snapshotBlockToWire,
  snapshotReplyToWire,
  type SnapshotBlock,
  type SnapshotBlockReply,
  type SnapshotCoordinatorParts,
} from './snapshot-coordinator';
export {
  checksumFile,
  SnapshotStore,
  type IncomingBlock,
  type ReceiveResult,
  type SnapshotFile,
} from './snapshot-store';
