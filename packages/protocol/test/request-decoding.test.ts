// The request decoders servers register with grpc-js: they never throw, and they refuse enum
// values a request's type does not declare, including varints that int32 decoding would truncate.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import {
  ChangeType,
  ClientOperationReq,
  ClientOpType,
  ClusterConfigChangeReq,
  eraftKvRequestDecoders,
  Entry,
  HandleServerType,
  healthRequestDecoders,
  InvalidRequest,
  KvOpPair,
  MemberChangeReq,
  MemberChangeType,
  ReadConsistency,
  ServerStatus,
  SlotExportReq,
  SlotImportReq,
  SlotStatus,
  WideInt32Reader,
} from '../src';

/** A KvOpPair whose op_type is the raw varint `opType`. */
function rawOp(opType: bigint): Uint8Array {
  return new BinaryWriter().uint32(8).uint64(opType).uint32(18).bytes(Buffer.from('k')).finish();
}

function refusal(result: unknown): string {
  if (!(result instanceof InvalidRequest))
    throw new Error(`expected a refusal, got ${String(result)}`);
  return result.message;
}

describe('WideInt32Reader', () => {
  it('decodes every valid int32 encoding as the generated reader does', () => {
    for (const value of [0, 1, 4, 127, 128, 2 ** 28 - 1, 2 ** 28, 2 ** 31 - 1, -1, -(2 ** 31)]) {
      const bytes = new BinaryWriter().int32(value).finish();
      expect(new WideInt32Reader(bytes).int32()).toBe(value);
    }
  });

  it('decodes a varint beyond int32 to its whole value, not its low 32 bits', () => {
    const bytes = new BinaryWriter().uint64(2n ** 32n + 1n).finish();
    expect(Entry.decode(new BinaryWriter().uint32(24).raw(bytes).finish()).eType).toBe(1);
    expect(new WideInt32Reader(bytes).int32()).toBe(2 ** 32 + 1);
    const fiveBytes = new BinaryWriter().uint32(2 ** 31).finish();
    expect(new WideInt32Reader(fiveBytes).int32()).toBe(2 ** 31);
  });
});

describe('eraftKvRequestDecoders', () => {
  const decode = eraftKvRequestDecoders.processRwOperation;

  it('decodes a valid ClientOperationReq', () => {
    const req = ClientOperationReq.fromPartial({
      kvs: [KvOpPair.fromPartial({ opType: ClientOpType.Scan, key: Buffer.from('a') })],
      readConsistency: ReadConsistency.SERIALIZABLE,
    });
    const decoded = decode(ClientOperationReq.encode(req).finish());
    expect(decoded).toEqual(req);
  });

  it('names the message type and the reason when the bytes do not decode', () => {
    // Field 4 (kvs) says 16 bytes follow; one does.
    const message = refusal(decode(Buffer.from([0x22, 0x10, 0x01])));
    expect(message).toMatch(/does not decode as eraftkv\.ClientOperationReq: premature EOF/);
    expect(refusal(eraftKvRequestDecoders.status(Buffer.from([0xff])))).toMatch(
      /eraftkv\.StatusReq/,
    );
  });

  it('refuses op_type 2^32 + 1, which int32 decoding would read as Put', () => {
    const bytes = new BinaryWriter()
      .uint32(34)
      .bytes(rawOp(2n ** 32n + 1n))
      .finish();
    expect(ClientOperationReq.decode(bytes).kvs[0].opType).toBe(ClientOpType.Put);
    expect(refusal(decode(bytes))).toMatch(
      /eraftkv\.ClientOperationReq: kvs\[0\]\.op_type is 4294967297, which is not a ClientOpType: use Noop \(0\), Put \(1\)/,
    );
  });

  it('leaves enum checks of stream requests to the handler, with the whole wide value', () => {
    const bytes = new BinaryWriter()
      .uint32(34)
      .bytes(rawOp(2n ** 32n + 1n))
      .finish();
    const req = eraftKvRequestDecoders.processRwOperationStream(bytes);
    expect(req).not.toBeInstanceOf(InvalidRequest);
    expect((req as ClientOperationReq).kvs[0].opType).toBe(2 ** 32 + 1);
  });

  it('refuses an undeclared or negative op_type in any op', () => {
    const ok = rawOp(1n);
    const bytes = new BinaryWriter().uint32(34).bytes(ok).uint32(34).bytes(rawOp(5n)).finish();
    expect(refusal(decode(bytes))).toMatch(/kvs\[1\]\.op_type is 5/);
    const negative = new BinaryWriter()
      .uint32(34)
      .bytes(rawOp(2n ** 64n - 1n))
      .finish();
    expect(refusal(decode(negative))).toMatch(/kvs\[0\]\.op_type is -1/);
  });

  it('refuses an undeclared read_consistency', () => {
    const bytes = new BinaryWriter()
      .uint32(40)
      .uint64(2n ** 32n)
      .finish();
    expect(refusal(decode(bytes))).toMatch(/read_consistency is 4294967296/);
    const two = new BinaryWriter().uint32(40).int32(2).finish();
    expect(refusal(decode(two))).toMatch(/read_consistency is 2, which is not a ReadConsistency/);
  });

  it('checks every enum field of ClusterConfigChangeReq', () => {
    const d = eraftKvRequestDecoders.clusterConfigChange;
    const encode = (req: Partial<ClusterConfigChangeReq>): Uint8Array =>
      ClusterConfigChangeReq.encode(ClusterConfigChangeReq.fromPartial(req)).finish();
    expect(d(encode({ changeType: ChangeType.SlotMove }))).not.toBeInstanceOf(InvalidRequest);
    expect(refusal(d(encode({ changeType: 8 as ChangeType })))).toMatch(/change_type is 8/);
    expect(refusal(d(encode({ handleServerType: 2 as HandleServerType })))).toMatch(
      /handle_server_type is 2/,
    );
    expect(
      refusal(d(encode({ server: { id: 1, address: 'h:1', serverStatus: 2 as ServerStatus } }))),
    ).toMatch(/server\.server_status is 2/);
    expect(
      refusal(
        d(
          encode({
            shardGroup: {
              id: 1,
              slots: [
                { id: 0, slotStatus: 0, statusModifyTime: 0, targetShardId: 0 },
                { id: 1, slotStatus: 4 as SlotStatus, statusModifyTime: 0, targetShardId: 0 },
              ],
              servers: [],
              leaderId: 0,
            },
          }),
        ),
      ),
    ).toMatch(/shard_group\.slots\[1\]\.slot_status is 4/);
    expect(
      refusal(
        d(
          encode({
            shardGroup: {
              id: 1,
              slots: [],
              servers: [{ id: 1, address: 'h:1', serverStatus: 9 as ServerStatus }],
              leaderId: 0,
            },
          }),
        ),
      ),
    ).toMatch(/shard_group\.servers\[0\]\.server_status is 9/);
    // change_type = 2^32 + 3 would otherwise read as ShardsQuery.
    const wide = new BinaryWriter()
      .uint32(8)
      .uint64(2n ** 32n + 3n)
      .finish();
    expect(refusal(d(wide))).toMatch(/change_type is 4294967299/);
  });

  it('checks MemberChangeReq.change_type', () => {
    const d = eraftKvRequestDecoders.memberChange;
    const ok = MemberChangeReq.encode(
      MemberChangeReq.fromPartial({ changeType: MemberChangeType.REMOVE }),
    ).finish();
    expect(d(ok)).toEqual(expect.objectContaining({ changeType: MemberChangeType.REMOVE }));
    const bad = new BinaryWriter()
      .uint32(16)
      .uint64(2n ** 32n + 2n)
      .finish();
    expect(refusal(d(bad))).toMatch(
      /eraftkv\.MemberChangeReq: change_type is 4294967298, which is not a MemberChangeType/,
    );
  });

  it('decodes health checks and refuses garbage', () => {
    expect(healthRequestDecoders.check(Buffer.alloc(0))).toEqual({ service: '' });
    expect(refusal(healthRequestDecoders.check(Buffer.from([0x0a, 0x05])))).toMatch(
      /grpc\.health\.v1\.HealthCheckRequest: premature EOF/,
    );
  });

  it('checks the fields of the slot move RPCs against what the servers can hold', () => {
    const exportReq = SlotExportReq.fromPartial({
      sourceShardId: 1,
      configVersion: 5,
      slots: [3, 4],
      nextSlot: 3,
    });
    const decodeExport = (fields: Partial<SlotExportReq>): unknown =>
      eraftKvRequestDecoders.slotExport(SlotExportReq.encode({ ...exportReq, ...fields }).finish());
    expect(decodeExport({})).toMatchObject({ sourceShardId: 1, slots: [3, 4] });
    for (const [fields, message] of [
      [{ slots: [] }, /slots: at least one slot/],
      [{ slots: [70_000] }, /slots: slot 70000 is not in/],
      [{ sourceShardId: 0 }, /source_shard_id: must be in \[1,/],
      [{ configVersion: -1 }, /config_version: must be in \[1,/],
      [{ nextSlot: 65_537 }, /next_slot: must be in \[0, 65536\]/],
      [{ afterKey: Buffer.alloc(70_000) }, /after_key: at most 65536 bytes/],
      [{ dedupAfter: -2 }, /dedup_after: must be in \[0,/],
      [{ budgetBytes: -1 }, /budget_bytes: must not be negative/],
    ] as [Partial<SlotExportReq>, RegExp][]) {
      expect(refusal(decodeExport(fields))).toMatch(message);
    }
    const importReq = SlotImportReq.fromPartial({
      targetShardId: 2,
      sourceShardId: 1,
      configVersion: 5,
      slots: [3],
      sourceAddresses: ['127.0.0.1:7088'],
    });
    const decodeImport = (fields: Partial<SlotImportReq>): unknown =>
      eraftKvRequestDecoders.slotImport(SlotImportReq.encode({ ...importReq, ...fields }).finish());
    expect(decodeImport({})).toMatchObject({ targetShardId: 2, sourceShardId: 1 });
    for (const [fields, message] of [
      [{ targetShardId: 0 }, /target_shard_id: must be in \[1,/],
      [{ sourceShardId: 2 }, /a group cannot import from itself/],
      [{ configVersion: 0 }, /config_version: must be in \[1,/],
      [{ sourceAddresses: [] }, /source_addresses: at least one/],
      [{ sourceAddresses: ['no port'] }, /"no port" is not host:port/],
    ] as [Partial<SlotImportReq>, RegExp][]) {
      expect(refusal(decodeImport(fields))).toMatch(message);
    }
  });
});
