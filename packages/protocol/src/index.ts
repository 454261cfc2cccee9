// @eraftkv/protocol: the wire contract of eraftkv (generated from protos/ by ts-proto) and the few
// helpers that every side of the wire shares. Generated code lives in ./generated and is never
// edited by hand; run `npm run generate` after changing protos/.
export * from './generated/eraftkv';
export {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthClient,
  HealthService,
  type HealthServer,
} from './generated/grpc/health/v1/health';
export * from './slot';
export * from './safe-integer';
export * from './request-decoding';
export { defaultMessageBytesMax, grpcChannelOptions } from './channel-options';
export {
  encodeMessage,
  eraftKvServiceDefinition,
  ERaftKvWireClient,
  type MessageEncoder,
} from './message-encoding';
export * from './permission';
export * from './lease-id';
export { environmentName, hideUnknownEnvironment, ignoredEnvironmentWarning } from './environment';
export { judgeDigests, type DigestVerdict } from './replica-digests';
export {
  BackupFileError,
  backupFormat,
  backupMagic,
  backupRecords,
  backupRecordBytesMax,
  BackupRecordKind,
  BackupWriter,
  decodeBackupPairs,
  encodeBackupPairs,
  readBackup,
  type BackupHeader,
  type BackupRecord,
  type BackupGroupBegin,
  type BackupGroupEnd,
  type BackupTrailer,
} from './backup-file';
