// The log entry encoding of a kv group: kind byte 1 + ClientOperationReq, kind byte 2 + config JSON.
import { ClientOperationReq, KvOpPair, ShardGroup, SlotStatus } from '@eraftkv/protocol';
import {
  CommandDecodeError,
  CommandKind,
  configFromTopology,
  decodeCommand,
  encodeClientRequest,
  encodeConfig,
  encodeDrop,
  encodeImportBegin,
  type AppliedConfig,
} from '../src';
import { authTableBytesMax } from '@eraftkv/server-kit';
import { parseAuthTable } from '../src/kv-commands';
import { b, get, put, request } from './common';

describe('log commands', () => {
  it('encodes a client request as kind 1 followed by the protobuf request', () => {
    const req = request([put('k', 'v'), get('k')], { clientId: 'c1', commandId: 7 });
    const data = encodeClientRequest(req);
    expect(data[0]).toBe(CommandKind.ClientRequest);
    const decoded = ClientOperationReq.decode(data.subarray(1));
    expect(decoded.clientId).toBe('c1');
    expect(decoded.commandId).toBe(7);
    expect(decoded.kvs.map((op) => op.key.toString())).toEqual(['k', 'k']);
    const command = decodeCommand(data);
    expect(command.kind).toBe(CommandKind.ClientRequest);
  });

  it('leaves response-only fields a client filled in out of the log', () => {
    const op = KvOpPair.fromPartial({
      ...put('k', 'v'),
      kvs: [{ key: b('junk'), value: b('x'.repeat(1000)) }],
      found: true,
    });
    const data = encodeClientRequest(request([op]));
    const command = decodeCommand(data);
    if (command.kind !== CommandKind.ClientRequest) throw new Error('wrong kind');
    expect(command.request.kvs[0].kvs).toEqual([]);
    expect(command.request.kvs[0].found).toBe(false);
    expect(data.length).toBeLessThan(100);
  });

  it('encodes a config as kind 2 followed by canonical JSON', () => {
    const config: AppliedConfig = {
      version: 3,
      slotCount: 16,
      slots: [
        { id: 9, status: 'Migrating' },
        { id: 2, status: 'Running' },
      ],
      servers: [
        { id: 2, address: 'b:2' },
        { id: 1, address: 'a:1' },
      ],
    };
    const data = encodeConfig(config);
    expect(data[0]).toBe(CommandKind.Config);
    expect(data.subarray(1).toString()).toBe(
      '{"version":3,"slotCount":16,"slots":[{"id":2,"status":"Running"},{"id":9,"status":"Migrating"}],"servers":[{"id":1,"address":"a:1"},{"id":2,"address":"b:2"}]}',
    );
    const command = decodeCommand(data);
    expect(command).toEqual({
      kind: CommandKind.Config,
      config: {
        ...config,
        slots: [...config.slots].reverse(),
        servers: [...config.servers].reverse(),
      },
    });
  });

  it.each([
    ['an empty entry', Buffer.alloc(0), 'empty command'],
    ['an unknown kind', Buffer.from([99, 1, 2]), 'unknown command kind 99'],
    ['a config that is not JSON', Buffer.concat([Buffer.from([2]), b('{')]), 'config is not JSON'],
    [
      'a config with version 0',
      Buffer.concat([Buffer.from([2]), b('{"version":0,"slotCount":4,"slots":[],"servers":[]}')]),
      'config version must be a positive integer',
    ],
    [
      'a config with a slot beyond the slot count',
      Buffer.concat([
        Buffer.from([2]),
        b('{"version":1,"slotCount":4,"slots":[{"id":4,"status":"Running"}],"servers":[]}'),
      ]),
      'config slot id 4 is not below 4',
    ],
    [
      'a config listing a slot twice',
      Buffer.concat([
        Buffer.from([2]),
        b(
          '{"version":1,"slotCount":4,"slots":[{"id":1,"status":"Running"},{"id":1,"status":"Migrating"}],"servers":[]}',
        ),
      ]),
      'config lists slot 1 twice',
    ],
    [
      'a config with an unknown slot status',
      Buffer.concat([
        Buffer.from([2]),
        b('{"version":1,"slotCount":4,"slots":[{"id":1,"status":"Lost"}],"servers":[]}'),
      ]),
      'unknown status Lost',
    ],
  ])('refuses %s', (_what, data, message) => {
    expect(() => decodeCommand(data)).toThrow(CommandDecodeError);
    expect(() => decodeCommand(data)).toThrow(message);
  });

  it("builds a group's config from the topology", () => {
    const groups = [
      ShardGroup.fromPartial({ id: 0, servers: [{ id: 1, address: 'meta:1' }] }),
      ShardGroup.fromPartial({
        id: 1,
        slots: [
          { id: 3, slotStatus: SlotStatus.Migrating },
          { id: 1, slotStatus: SlotStatus.Running },
        ],
        servers: [{ id: 1, address: 'kv:1' }],
      }),
    ];
    expect(configFromTopology({ groupId: 1, version: 5, slotCount: 8, groups })).toEqual({
      version: 5,
      slotCount: 8,
      slots: [
        { id: 1, status: 'Running' },
        { id: 3, status: 'Migrating' },
      ],
      servers: [{ id: 1, address: 'kv:1' }],
    });
    expect(configFromTopology({ groupId: 2, version: 5, slotCount: 8, groups })).toEqual({
      version: 5,
      slotCount: 8,
      slots: [],
      servers: [],
    });
  });

  it('lists the slots another group is moving to this one as Importing', () => {
    const groups = [
      ShardGroup.fromPartial({
        id: 1,
        slots: [
          { id: 3, slotStatus: SlotStatus.Migrating, targetShardId: 2 },
          { id: 4, slotStatus: SlotStatus.Migrating, targetShardId: 3 },
          { id: 1, slotStatus: SlotStatus.Running },
        ],
      }),
      ShardGroup.fromPartial({ id: 2, slots: [{ id: 6, slotStatus: SlotStatus.Running }] }),
    ];
    expect(configFromTopology({ groupId: 2, version: 7, slotCount: 8, groups }).slots).toEqual([
      { id: 3, status: 'Importing' },
      { id: 6, status: 'Running' },
    ]);
    expect(configFromTopology({ groupId: 3, version: 7, slotCount: 8, groups }).slots).toEqual([
      { id: 4, status: 'Importing' },
    ]);
  });

  it.each([
    ['an import of no slot', encodeImportBegin, { source: 1, version: 2, slots: [] }, 'non-empty'],
    [
      'an import of slot 70000',
      encodeImportBegin,
      { source: 1, version: 2, slots: [70000] },
      'not below',
    ],
    ['a drop of 5000 keys', encodeDrop, { slots: [1], limit: 5000 }, 'drop limit must be in'],
  ] as const)('refuses to encode or decode %s', (_what, encode, body, message) => {
    expect(() => encode(body as never)).toThrow(message);
  });

  it('decodes the slot move commands it encodes, and refuses malformed ones', () => {
    expect(decodeCommand(encodeImportBegin({ source: 1, version: 2, slots: [5, 2] }))).toEqual({
      kind: CommandKind.ImportBegin,
      begin: { source: 1, version: 2, slots: [2, 5] },
    });
    expect(decodeCommand(encodeDrop({ slots: [4], limit: 10 }))).toEqual({
      kind: CommandKind.Drop,
      drop: { slots: [4], limit: 10 },
    });
    expect(() =>
      decodeCommand(Buffer.concat([Buffer.from([CommandKind.Drop]), b('{"slots":[1],"limit":0}')])),
    ).toThrow('drop limit must be in [1, 4096], got 0');
    expect(() =>
      decodeCommand(
        Buffer.concat([
          Buffer.from([CommandKind.ImportBegin]),
          b('{"source":0,"version":1,"slots":[1]}'),
        ]),
      ),
    ).toThrow('import source must be a positive group id');
    expect(() =>
      decodeCommand(
        Buffer.concat([Buffer.from([CommandKind.ImportChunk]), Buffer.from([0xff, 0xff])]),
      ),
    ).toThrow(CommandDecodeError);
  });

  it('refuses a topology the replicas would refuse (slot count 0)', () => {
    expect(() => configFromTopology({ groupId: 1, version: 5, slotCount: 0, groups: [] })).toThrow(
      CommandDecodeError,
    );
  });

  it('refuses an auth table larger than the meta group ever builds, before parsing it', () => {
    const padding = ' '.repeat(authTableBytesMax);
    const body = Buffer.from(`{"revision":1,"enabled":false,"users":{},"roles":{}}${padding}`);
    expect(() => parseAuthTable(body)).toThrow(/larger than 524288/);
    expect(
      parseAuthTable(Buffer.from('{"revision":1,"enabled":false,"users":{},"roles":{}}')).revision,
    ).toBe(1);
  });
});
