// @eraftkv/raft-server: the RaftServer runtime that drives @eraftkv/raft's RawNode with a clock,
// a two-tier log store on RocksDB, snapshots in blocks and a gRPC peer transport, plus what a
// node's data dir and observability need (identity, metrics, the HTTP endpoint).
export {
  AccessDeniedError,
  BusyError,
  EraftError,
  InvalidArgumentError,
  LimitExceededError,
  NotLeaderError,
  ProposalDroppedError,
  RejectedError,
  StoppedError,
  type RefusalCode,
} from './errors';
export {
  profileSeconds,
  profileSecondsMax,
  startHttpEndpoint,
  type HealthReport,
  type HttpEndpoint,
  type HttpEndpointOptions,
} from './http-endpoint';
export { LogStore, LogStoreCorruptError, type LogStoreOptions } from './log-store';
export {
  isLogLevel,
  jsonLogger,
  silentLogger,
  type LogFields,
  type Logger,
  type LogLevel,
} from './logger';
export { RaftMetrics } from './metrics';
export {
  createNodeIdentity,
  DataDirError,
  identityFileName,
  openNodeIdentity,
  restoreMarkerFileName,
  type NodeClaim,
  type NodeIdentity,
  type NodeKind,
} from './node-identity';
export { BootstrapRefusedError, RaftServerBoot } from './bootstrap';
export { RaftServer, type RaftServerStatus } from './raft-server';
export {
  raftServerDefaults,
  resolveRaftServerOptions,
  type RaftServerOptions,
  type ResolvedRaftServerOptions,
} from './raft-server-options';
export { seedDataDir, seedIndex, seedTerm } from './seed';
export { SnapshotStore, type SnapshotFile } from './snapshot';
export type { StateMachine } from './state-machine';
export {
  directorySizeBytes,
  openRocksEngine,
  StorageCorruptionError,
  StorageEngineError,
  verifyStateBeforeOpen,
  verifyStoreChecksums,
  type KeyRange,
  type StorageEngine,
  type WriteOp,
} from './storage-engine';
export {
  checkPeerNumber,
  createGrpcPeerRpc,
  DeferredPeerInbox,
  membershipToWire,
  peerNumberMax,
  PeerRefusal,
  peerServiceHandlers,
  protobufMembershipCodec,
  type PeerAnswer,
  type PeerAuthenticator,
  type PeerCall,
  type PeerInbox,
  type PeerInput,
  type PeerRpc,
  type PeerServiceHandlers,
  type PeerTransportOptions,
} from './transport';
