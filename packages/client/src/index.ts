// @eraftkv/client: the TypeScript client of eraftkv. See eraftkv-client.ts for the API, and
// leader-caller.ts for the retry policy that the servers share when they call another group.
export { EraftKvClient } from './eraftkv-client';
export {
  KvClient,
  toBytes,
  type BatchOp,
  type BatchResult,
  type PutOptions,
  type ResponseHeader,
  type Bytes,
  type KeyValue,
  type ScanResult,
} from './kv-client';
export { AdminClient, type MemberView } from './admin-client';
export {
  ClientSession,
  type CallOptions,
  type ClusterView,
  type EraftKvClientOptions,
  type ReadOptions,
  clientCredentials,
  type ClientTls,
} from './client-session';
export {
  AccessDeniedError,
  ClusterError,
  describeErrorCode,
  EraftKvError,
  InvalidArgumentError,
  LeaseNotFoundError,
  NotLeaderError,
  TimeoutError,
  UnavailableError,
  WatchCompactedError,
  WrongShardError,
} from './errors';
export {
  Watch,
  type WatchBatch,
  type WatchEvent,
  type WatchOptions,
  type WatchSlotMark,
} from './watch';
export {
  LeaseClient,
  LeaseKeepAlive,
  type LeaseGrant,
  type LeaseGrantOptions,
  type LeaseKeepAliveOptions,
  type LeaseKeepAliveResponse,
  type LeaseStatus,
  type LeaseTimeToLive,
} from './lease';
export { formatLeaseId, leaseGroupOf, leaseIdGroupFactor } from './lease-id';
export { backoffMs, type BackoffOptions } from './backoff';
export { Connections, type UnaryCall } from './connections';
export {
  hintVerdict,
  LeaderCaller,
  rpcError,
  type LeaderCall,
  type LeaderCallerOptions,
  type LeaderHint,
  type Verdict,
} from './leader-caller';
export { formatSlotRanges, parseSlotRanges } from '@eraftkv/protocol';
export { Topology, type GroupInfo } from './topology';
export {
  AuthClient,
  type AuthListing,
  type AuthStatus,
  type KeyPermission,
  type PermissionKind,
} from './auth-client';
