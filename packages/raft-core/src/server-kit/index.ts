// Pieces both server binaries are made of: the gRPC host, the admin RPCs, error mapping, the
// shared command-line options, peer lists and the process life cycle.
export { adminHandlers, type AdminInfo } from './admin-handlers';
export {
  corruptionStatus,
  errorAnswer,
  StatusError,
  unaryHandler,
  unimplementedStream,
  type ErrorAnswer,
} from './error-mapping';
export {
  defaultGrpcConnectionLimits,
  startGrpcHost,
  type GrpcConnectionLimits,
  type GrpcHost,
  type GrpcHostOptions,
} from './grpc-host';
export { commonNodeOptions, validateCommonArgs, type CommonNodeArgs } from './node-options';
export { checkPeerAddress, formatPeers, parsePeerRoutes, parsePeers, splitHostPort } from './peers';
export { installLifecycle, type Lifecycle } from './process-lifecycle';
export { GroupCallError, GroupCaller, type LeaderHint, type UnaryMethod } from './group-caller';
