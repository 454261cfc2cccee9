import {
  AppendEntriesReq,
  ClientOperationReq,
  ClientOperationResp,
  encodeMessage,
  eraftKvServiceDefinition,
  ERaftKvService,
  KvOpPair,
  type MessageEncoder,
} from '../src';

function request(valueBytes: number, commandId: number): ClientOperationReq {
  return ClientOperationReq.fromPartial({
    clientId: 'c1',
    commandId,
    kvs: [{ opType: 1, key: Buffer.from('k'), value: Buffer.alloc(valueBytes, 7) }],
  });
}

describe('encodeMessage', () => {
  it('gives the bytes of the generated encoder, in a buffer of their own', () => {
    for (const size of [0, 10, 5000, 2 * 1024 * 1024, 3]) {
      const req = request(size, size + 1);
      const expected = Buffer.from(ClientOperationReq.encode(req).finish());
      const bytes = encodeMessage(ClientOperationReq, req);
      // (equals: toEqual walks megabytes slowly)
      expect(bytes.equals(expected)).toBe(true);
      expect(bytes.buffer.byteLength).toBe(bytes.length);
      // The next message does not change the bytes already handed out.
      encodeMessage(ClientOperationReq, request(100, 9));
      expect(bytes.equals(expected)).toBe(true);
    }
  });

  it('writes a prefix byte before the message', () => {
    const req = request(20, 5);
    const bytes = encodeMessage(ClientOperationReq, req, 1);
    expect(bytes[0]).toBe(1);
    expect(ClientOperationReq.decode(bytes.subarray(1))).toEqual(req);
  });

  it('starts clean after an encoder threw', () => {
    const failing: MessageEncoder<ClientOperationReq> = {
      encode: (m, w) => {
        ClientOperationReq.encode(m, w).fork();
        throw new Error('boom');
      },
    };
    expect(() => encodeMessage(failing, request(10, 1))).toThrow('boom');
    const req = request(10, 2);
    expect(encodeMessage(ClientOperationReq, req)).toEqual(
      Buffer.from(ClientOperationReq.encode(req).finish()),
    );
  });

  it('serializes the hot methods like the generated definition', () => {
    const resp = ClientOperationResp.fromPartial({
      ops: [KvOpPair.fromPartial({ key: Buffer.from('a'), success: true })],
      leaderAddress: '127.0.0.1:1',
    });
    expect(eraftKvServiceDefinition.processRwOperation.responseSerialize(resp)).toEqual(
      ERaftKvService.processRwOperation.responseSerialize(resp),
    );
    const append = AppendEntriesReq.fromPartial({ term: 3, leaderId: 1, groupId: 1 });
    expect(eraftKvServiceDefinition.appendEntriesStream.requestSerialize(append)).toEqual(
      ERaftKvService.appendEntriesStream.requestSerialize(append),
    );
  });
});
