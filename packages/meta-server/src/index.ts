// @eraftkv/meta-server: the MetaServer (a RaftServer of group 0 whose state machine is the
// cluster topology) and the pieces it is made of, exported for tests and tools.
export { MetaServer, type MetaServerOptions } from './meta-server';
export { clusterConfigChangeHandler, planRequest, type MetaServiceDeps } from './meta-service';
export { authCommandOf, authHandler, type AuthServiceDeps } from './auth-service';
export { SlotMoveCoordinator, type SlotMoveDeps } from './slot-move';
export {
  GrpcSourceGroupClient,
  type SourceGroupClient,
  type SourceVerdict,
} from './source-group-client';
export * from './topology';
export { CommandDecodeError, decodeCommand, encodeCommand } from './topology-command-codec';
export { TopologyStateMachine, writeTopologySnapshot } from './topology-state-machine';
export { groupToWire, metaGroupId, topologyToWire } from './topology-wire';
export { parseMetaArgs, type MetaArgs, type ParsedMetaArgs } from './cli-options';
