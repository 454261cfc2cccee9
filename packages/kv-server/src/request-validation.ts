// Limits of a kv request and the checks that refuse malformed ones before anything is proposed or
// read (docs/servers-contract.md, DESIGN.md section 9). Every refusal is an InvalidArgumentError,
// answered INVALID_ARGUMENT; its message says what is wrong and what the limit is.
import {
  ClientOpType,
  ReadConsistency,
  type ClientOperationReq,
  type KvOpPair,
} from '@eraftkv/protocol';
import { InvalidArgumentError } from '@eraftkv/raft-server';

export interface KvLimits {
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly opsPerRequestMax: number;
  /** The most pairs one Scan returns, whatever it asks for. */
  readonly scanLimitMax: number;
  /** The most bytes of one encoded write request, which becomes one log entry. */
  readonly entryBytesMax: number;
  readonly clientIdBytesMax: number;
  /**
   * The most bytes of pairs one read request returns, across all its ops (key and value bytes
   * plus pairOverheadBytes each): Gets are answered whole, Scans stop early with `more`.
   */
  readonly responseBytesMax: number;
  /** Read requests with a Scan served at once; more are refused with RESOURCE_EXHAUSTED. */
  readonly scanRequestsInFlightMax: number;
}

/** What one key-value pair costs in a response beyond its key and value bytes (field tags, lengths). */
export const pairOverheadBytes = 16;

/** What a Scan returns when its limit is 0. */
export const scanLimitDefault = 1000;

/**
 * The largest write request: one maximal key and value plus room for a few small ops. RaftServer
 * sends an entry larger than its append budget on its own, and its peer messages may be the
 * append budget plus 1 MiB, so the server sets that budget to this value and an entry always fits.
 */
export function entryBytesMaxFor(keyBytesMax: number, valueBytesMax: number): number {
  return Math.max(1024 * 1024, keyBytesMax + valueBytesMax + 64 * 1024);
}

/** The defaults of the eraftkv-kv flags (--response-bytes-max, --scan-requests-in-flight-max). */
export const responseBytesMaxDefault = 4 * 1024 * 1024;
export const scanRequestsInFlightMaxDefault = 16;

export function kvLimits(options: {
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly opsPerRequestMax: number;
  readonly scanLimitMax: number;
  readonly responseBytesMax?: number;
  readonly scanRequestsInFlightMax?: number;
}): KvLimits {
  return {
    keyBytesMax: options.keyBytesMax,
    valueBytesMax: options.valueBytesMax,
    opsPerRequestMax: options.opsPerRequestMax,
    scanLimitMax: options.scanLimitMax,
    entryBytesMax: entryBytesMaxFor(options.keyBytesMax, options.valueBytesMax),
    clientIdBytesMax: 256,
    responseBytesMax: options.responseBytesMax ?? responseBytesMaxDefault,
    scanRequestsInFlightMax: options.scanRequestsInFlightMax ?? scanRequestsInFlightMaxDefault,
  };
}

/** The defaults of the eraftkv-kv flags. */
export const defaultKvLimits: KvLimits = kvLimits({
  keyBytesMax: 4096,
  valueBytesMax: 1024 * 1024,
  opsPerRequestMax: 128,
  scanLimitMax: 10_000,
});

/**
 * What a valid request does: only Gets (read), Gets and at least one Scan (scan), or any Put or
 * Del (write).
 */
export type RequestKind = 'read' | 'scan' | 'write';

/** The op's type, for messages that name one of its fields. */
function typeOf(op: KvOpPair): string {
  return ClientOpType[op.opType] ?? String(op.opType);
}

/** Checks a ProcessRWOperation request; throws an InvalidArgumentError naming the problem and the limit. */
export function validateClientRequest(req: ClientOperationReq, limits: KvLimits): RequestKind {
  if (req.kvs.length === 0)
    throw new InvalidArgumentError('kvs is empty: the request has no operations');
  if (req.kvs.length > limits.opsPerRequestMax) {
    throw new InvalidArgumentError(
      `kvs has ${req.kvs.length} operations; the limit is ${limits.opsPerRequestMax} (--ops-per-request-max)`,
    );
  }
  if (
    req.readConsistency !== ReadConsistency.LINEARIZABLE &&
    req.readConsistency !== ReadConsistency.SERIALIZABLE
  ) {
    throw new InvalidArgumentError(
      `read_consistency ${String(req.readConsistency)} is not a ReadConsistency`,
    );
  }
  const clientIdBytes = Buffer.byteLength(req.clientId, 'utf8');
  if (clientIdBytes > limits.clientIdBytesMax) {
    throw new InvalidArgumentError(
      `client_id is ${clientIdBytes} bytes; the limit is ${limits.clientIdBytesMax}`,
    );
  }
  if (req.commandId < 0)
    throw new InvalidArgumentError(`command_id must not be negative, got ${req.commandId}`);
  let writes = 0;
  let scans = 0;
  req.kvs.forEach((op, i) => {
    switch (op.opType) {
      case ClientOpType.Put:
      case ClientOpType.Del:
        writes++;
        break;
      case ClientOpType.Get:
        break;
      case ClientOpType.Scan:
        scans++;
        checkScan(op, i, limits);
        break;
      case ClientOpType.Noop:
      case ClientOpType.UNRECOGNIZED:
      default:
        throw new InvalidArgumentError(
          `kvs[${i}].op_type is ${String(op.opType)}; use Put (1), Get (2), Del (3) or Scan (4)`,
        );
    }
    // A Scan starts at its key; an empty start key means the beginning of the key space. Every
    // other op names one key, and an empty key names nothing.
    if (op.key.length === 0 && op.opType !== ClientOpType.Scan)
      throw new InvalidArgumentError(`kvs[${i}].key is empty (${typeOf(op)})`);
    if (op.key.length > limits.keyBytesMax) {
      throw new InvalidArgumentError(
        `kvs[${i}].key is ${op.key.length} bytes (${typeOf(op)}); the limit is ${limits.keyBytesMax} (--key-bytes-max)`,
      );
    }
    if (op.value.length > limits.valueBytesMax) {
      throw new InvalidArgumentError(
        `kvs[${i}].value is ${op.value.length} bytes (${typeOf(op)}); the limit is ${limits.valueBytesMax} (--value-bytes-max)`,
      );
    }
  });
  if (writes > 0 && scans > 0) {
    throw new InvalidArgumentError(
      'a Scan cannot share a request with writes (Put, Del); send the scan on its own',
    );
  }
  if (writes > 0) return 'write';
  return scans > 0 ? 'scan' : 'read';
}

function checkScan(op: KvOpPair, i: number, limits: KvLimits): void {
  if (op.endKey.length > limits.keyBytesMax) {
    throw new InvalidArgumentError(
      `kvs[${i}].end_key is ${op.endKey.length} bytes (Scan); the limit is ${limits.keyBytesMax} (--key-bytes-max)`,
    );
  }
  if (!Number.isSafeInteger(op.limit) || op.limit < 0)
    throw new InvalidArgumentError(`kvs[${i}].limit is ${op.limit} (Scan); it must be 0 or more`);
}

/** Refuses a write request whose encoded form (one log entry) exceeds the entry limit. */
export function checkEntrySize(entryBytes: number, limits: KvLimits): void {
  if (entryBytes > limits.entryBytesMax) {
    throw new InvalidArgumentError(
      `the write request is ${entryBytes} bytes; one request may carry at most ${limits.entryBytesMax} bytes (split it into several requests)`,
    );
  }
}

/** How many pairs a Scan returns at most: its limit (0 means the default), capped by the server. */
export function effectiveScanLimit(limit: number, limits: KvLimits): number {
  return Math.min(limit === 0 ? scanLimitDefault : limit, limits.scanLimitMax);
}
