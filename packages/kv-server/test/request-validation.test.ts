// The checks that refuse malformed requests before anything is proposed or read.
import { ClientOpType, KvOpPair, ReadConsistency } from '@eraftkv/protocol';
import { InvalidArgumentError } from '@eraftkv/raft-server';
import {
  checkEntrySize,
  defaultKvLimits,
  effectiveScanLimit,
  kvLimits,
  validateClientRequest,
} from '../src';
import { b, del, get, put, request, scan } from './common';

const limits = kvLimits({
  keyBytesMax: 8,
  valueBytesMax: 16,
  opsPerRequestMax: 3,
  scanLimitMax: 50,
});

describe('validateClientRequest', () => {
  it('classifies a request with any Put or Del as a write', () => {
    expect(validateClientRequest(request([put('a', '1'), get('a')]), limits)).toBe('write');
    expect(validateClientRequest(request([del('a')]), limits)).toBe('write');
  });

  it('classifies Gets alone as a read, and Gets with a Scan as a scan', () => {
    expect(validateClientRequest(request([get('a'), get('b')]), limits)).toBe('read');
    expect(validateClientRequest(request([get('a'), scan('a', 'z', 5)]), limits)).toBe('scan');
  });

  it('accepts a Scan from the beginning of the key space (empty start key)', () => {
    expect(validateClientRequest(request([scan('')]), limits)).toBe('scan');
  });

  it.each([
    ['no operations', request([]), 'kvs is empty: the request has no operations'],
    [
      'too many operations',
      request([get('a'), get('b'), get('c'), get('d')]),
      'kvs has 4 operations; the limit is 3 (--ops-per-request-max)',
    ],
    ['an empty key', request([put('', 'v')]), 'kvs[0].key is empty (Put)'],
    [
      'a too long key',
      request([get('123456789')]),
      'kvs[0].key is 9 bytes (Get); the limit is 8 (--key-bytes-max)',
    ],
    [
      'a too long value',
      request([put('k', 'x'.repeat(17))]),
      'kvs[0].value is 17 bytes (Put); the limit is 16 (--value-bytes-max)',
    ],
    [
      'a too long scan end key',
      request([scan('a', '123456789')]),
      'kvs[0].end_key is 9 bytes (Scan); the limit is 8 (--key-bytes-max)',
    ],
    ['a negative scan limit', request([scan('a', 'b', -1)]), 'kvs[0].limit is -1 (Scan)'],
    [
      'a Scan in a request that writes',
      request([put('a', '1'), scan('a')]),
      'a Scan cannot share a request with writes',
    ],
    [
      'a Noop',
      request([KvOpPair.fromPartial({ opType: ClientOpType.Noop, key: b('a') })]),
      'kvs[0].op_type is 0; use Put (1), Get (2), Del (3) or Scan (4)',
    ],
    [
      'an unknown op type',
      request([KvOpPair.fromPartial({ opType: 42 as ClientOpType, key: b('a') })]),
      'kvs[0].op_type is 42',
    ],
    [
      'an unknown read consistency',
      request([get('a')], { readConsistency: 7 as ReadConsistency }),
      'read_consistency 7 is not a ReadConsistency',
    ],
    [
      'a too long client id',
      request([put('a', '1')], { clientId: 'c'.repeat(300), commandId: 1 }),
      'client_id is 300 bytes; the limit is 256',
    ],
    [
      'a negative command id',
      request([put('a', '1')], { clientId: 'c', commandId: -1 }),
      'command_id must not be negative',
    ],
  ])('refuses %s with an InvalidArgumentError that says so', (_what, req, message) => {
    expect(() => validateClientRequest(req, limits)).toThrow(InvalidArgumentError);
    expect(() => validateClientRequest(req, limits)).toThrow(message);
  });

  it('has the defaults of the contract', () => {
    expect(defaultKvLimits.keyBytesMax).toBe(4096);
    expect(defaultKvLimits.valueBytesMax).toBe(1048576);
    expect(defaultKvLimits.opsPerRequestMax).toBe(128);
    expect(defaultKvLimits.scanLimitMax).toBe(10000);
    expect(defaultKvLimits.responseBytesMax).toBe(4 * 1024 * 1024);
    expect(defaultKvLimits.scanRequestsInFlightMax).toBe(16);
  });
});

describe('effectiveScanLimit', () => {
  it('uses 1000 for a limit of 0, capped by the server maximum', () => {
    expect(effectiveScanLimit(0, defaultKvLimits)).toBe(1000);
    expect(effectiveScanLimit(0, limits)).toBe(50);
    expect(effectiveScanLimit(20, limits)).toBe(20);
    expect(effectiveScanLimit(500, limits)).toBe(50);
  });
});

describe('checkEntrySize', () => {
  it('refuses a write request larger than one log entry may be', () => {
    expect(() => checkEntrySize(defaultKvLimits.entryBytesMax, defaultKvLimits)).not.toThrow();
    expect(() => checkEntrySize(defaultKvLimits.entryBytesMax + 1, defaultKvLimits)).toThrow(
      `one request may carry at most ${defaultKvLimits.entryBytesMax} bytes`,
    );
  });

  it('leaves room for a maximal key and value in one entry', () => {
    expect(defaultKvLimits.entryBytesMax).toBeGreaterThan(4096 + 1048576);
  });
});
