// @eraftkv/raft-core: the Raft protocol as a deterministic state machine (./core) and the
// RaftServer runtime that drives it with a clock, a log store, snapshots and a gRPC transport.
export const raftCorePackage = '@eraftkv/raft-core';
