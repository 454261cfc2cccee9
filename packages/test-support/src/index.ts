// @eraftkv/test-support: what the tests of every package share. Waiting for a condition with a
// deadline (waitFor), gRPC servers on 127.0.0.1 port 0 (startGrpcServer, closedAddress), a fake
// ERaftKv server that answers UNIMPLEMENTED for every RPC a test does not give it
// (startFakeERaftKv, eraftKvService) and ClusterConfigChange as a promise (configChange).
export { waitFor, type WaitForOptions } from './wait-for';
export { waitUntil } from './wait-until';
export { closedAddress, startGrpcServer, type StartedServer } from './grpc-server';
export { eraftKvService, startFakeERaftKv, type FakeERaftKvOptions } from './fake-eraftkv';
export { configChange, type ConfigChangeFields } from './config-change';
