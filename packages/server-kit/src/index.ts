// Pieces both server binaries are made of: the gRPC host, the admin RPCs, error mapping, the
// shared command-line options, peer lists, the process life cycle, the pid file and how a server
// calls another group.
export { adminHandlers, type AdminInfo } from './admin-handlers';
export {
  errorAnswer,
  failureStatus,
  unaryHandler,
  unimplementedStream,
  type ErrorAnswer,
  type FailureStatus,
} from './error-mapping';
export {
  defaultGrpcConnectionLimits,
  startGrpcHost,
  type GrpcConnectionLimits,
  type GrpcHost,
  type GrpcHostOptions,
} from './grpc-host';
export {
  commonNodeOptions,
  configFileDescription,
  nodeAddressing,
  raftTuningOf,
  tlsFlagsOf,
  validateCommonArgs,
  type CommonNodeArgs,
  type NodeAddressing,
} from './node-options';
export { configFileBytesMax, loadConfigFile, type ConfigOptionSpec } from './config-file';
export {
  advertisedAddressProblem,
  checkPeerAddress,
  formatPeers,
  parsePeerRoutes,
  parsePeers,
  peersDisagreement,
  peersMissingSelf,
  splitHostPort,
} from './peers';
export { installLifecycle, type Lifecycle } from './process-lifecycle';
export {
  dataDirOfProcess,
  dataDirOwner,
  isNodeOfDataDir,
  isProcessAlive,
  pidFileName,
  pidFilePath,
  readPidFile,
  removePidFile,
  writePidFile,
} from './pid-file';
export { groupCaller, type GroupCallerOptions } from './group-caller';
export { NodeHost, type NodeHostOptions } from './node-host';
export { openRaftNode, type RaftNodeOptions, type RaftTuning } from './raft-node';
export { memberUri, NodeTls, type MemberAuthenticator, type NodeTlsFlags } from './tls';
export {
  authCommandFromJson,
  authCommandToJson,
  AuthFormatError,
  authNameBytesMax,
  AuthTable,
  authTableBytesMax,
  permissionKeyBytesMax,
  rootRole,
  rootUser,
  type AuthCommand,
  type AuthCommandJson,
  type AuthTableJson,
  type Permission,
  type PermissionJson,
  type PermissionType,
} from './auth-table';
export {
  AccessControl,
  anonymous,
  anonymousCaller,
  type Caller,
  type CallerOf,
  type KeyAccess,
} from './access';
