// @eraftkv/client: the TypeScript client of eraftkv. See eraftkv-client.ts for the API.
export {
  EraftKvClient,
  toBytes,
  type BatchOp,
  type BatchResult,
  type Bytes,
  type CallOptions,
  type ClusterView,
  type EraftKvClientOptions,
  type KeyValue,
  type MemberView,
  type ReadOptions,
  type ScanResult,
} from './eraftkv-client';
export {
  ClusterError,
  describeErrorCode,
  EraftKvError,
  InvalidArgumentError,
  NotLeaderError,
  TimeoutError,
  UnavailableError,
  WrongShardError,
} from './errors';
export { backoffMs, type BackoffOptions } from './backoff';
export { formatSlotRanges, parseSlotRanges, Topology, type GroupInfo } from './topology';
