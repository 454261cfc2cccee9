// The one table from errors to answers, over real gRPC on 127.0.0.1: errors thrown on purpose
// (EraftError) get the status or the error code they carry; anything else that escapes a handler
// is a bug, answered INTERNAL and logged with its stack through the server's Logger.
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import {
  ClientOperationReq,
  ClientOperationResp,
  ERaftKvClient,
  ErrorCode,
  type ERaftKvServer,
} from '@eraftkv/protocol';
import {
  BusyError,
  DataDirError,
  InvalidArgumentError,
  LimitExceededError,
  NotLeaderError,
  ProposalDroppedError,
  RejectedError,
  StoppedError,
  StorageCorruptionError,
  StorageEngineError,
  type LogFields,
  type Logger,
} from '@eraftkv/raft-server';
import { eraftKvService } from '@eraftkv/test-support';
import { errorAnswer, startGrpcHost, unaryHandler, type GrpcHost } from '../src';

interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly fields: LogFields;
}

function capturingLogger(lines: LogLine[]): Logger {
  const at =
    (level: string) =>
    (message: string, fields: LogFields = {}): void => {
      lines.push({ level, message, fields });
    };
  const logger: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  };
  return logger;
}

/** What the handler throws, chosen by the request's client_id. */
const thrown: Record<string, () => Error> = {
  'plain-error': () => new Error('a plain error escaped'),
  'type-error': () => new TypeError('cannot read properties of undefined'),
  'range-error': () => new RangeError('a RangeError from a bug, not from bad input'),
  'storage-failure': () => new StorageEngineError('sync /data/state failed: EIO'),
  'escaped-not-leader': () => new NotLeaderError(2, '127.0.0.1:7002'),
  invalid: () => new InvalidArgumentError('kvs[0].key is empty'),
  busy: () => new BusyError('10000 proposals are already pending; retry with backoff'),
  limit: () => new LimitExceededError('the answer exceeds --response-bytes-max'),
  stopped: () => new StoppedError('the raft server is stopping'),
  dropped: () => new ProposalDroppedError('the entry was replaced by another leader'),
  corrupt: () =>
    new StorageCorruptionError('/data/state', 'the RocksDB data in /data/state is corrupt'),
  'data-dir': () => new DataDirError('node 3 at 127.0.0.1:7003 refused'),
};

/** What a routing handler's RaftServer call fails with, chosen by the request's client_id. */
const refused: Record<string, () => Error> = {
  'not-leader': () => new NotLeaderError(2, '127.0.0.1:7002'),
  'no-leader': () => new NotLeaderError(0, ''),
  'transfer-failed': () =>
    new RejectedError(ErrorCode.TRANSFER_FAILED, 'node 3 did not take over leadership in time'),
  'change-pending': () =>
    new RejectedError(ErrorCode.MEMBERSHIP_CHANGE_PENDING, 'another membership change'),
  'busy-in-routing': () => new BusyError('a leadership transfer is in progress; retry shortly'),
};

/** A function name that the stack of a bug must show. */
function handlerThatThrows(key: string): never {
  const make = thrown[key];
  if (make === undefined) throw new Error(`unknown key ${key}`);
  throw make();
}

describe('error mapping', () => {
  /** target_id -> key of `refused` (TransferLeaderReq carries numbers only). */
  const keys = Object.keys(refused);
  const lines: LogLine[] = [];
  const logger = capturingLogger(lines);
  let host: GrpcHost;
  let client: ERaftKvClient;

  const service: ERaftKvServer = eraftKvService({
    // Throws whatever the request names.
    processRwOperation: unaryHandler<ClientOperationReq, ClientOperationResp>(
      (req) => Promise.resolve(handlerThatThrows(req.clientId)),
      logger,
    ),
    // Turns what the "RaftServer" refused with into a routing answer, as the services do.
    transferLeader: unaryHandler((req) => {
      const make = refused[keys[req.targetId] ?? ''];
      try {
        if (make === undefined) throw new Error(`unknown target ${req.targetId}`);
        throw make();
      } catch (err) {
        const a = errorAnswer(err);
        return Promise.resolve({
          errorCode: a.errorCode,
          errorMessage: a.errorMessage,
          leaderAddress: a.leaderAddress,
          leaderId: a.leaderId,
        });
      }
    }, logger),
  });

  const call = (key: string): Promise<grpc.ServiceError> =>
    new Promise((resolve, reject) => {
      client.processRwOperation(
        ClientOperationReq.fromPartial({ clientId: key }),
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err) => (err === null ? reject(new Error(`${key} was answered`)) : resolve(err)),
      );
    });

  const transfer = (key: string) =>
    new Promise<{ errorCode: ErrorCode; leaderId: number; leaderAddress: string }>(
      (resolve, reject) => {
        client.transferLeader(
          { groupId: 1, targetId: keys.indexOf(key) },
          new grpc.Metadata(),
          { deadline: Date.now() + 5000 },
          (err, resp) => (err === null ? resolve(resp) : reject(err)),
        );
      },
    );

  beforeAll(async () => {
    host = await startGrpcHost({
      listen: '127.0.0.1:0',
      messageBytesMax: 1024 * 1024,
      registry: new Registry(),
      service,
      serving: () => true,
    });
    client = new ERaftKvClient(host.address, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    host.forceShutdown();
  });

  beforeEach(() => {
    lines.length = 0;
  });

  it.each(['plain-error', 'type-error', 'range-error'])(
    'answers a %s that escapes a handler INTERNAL and logs it with its stack',
    async (key) => {
      const err = await call(key);
      const expected = thrown[key]();
      expect(err.code).toBe(grpc.status.INTERNAL);
      expect(err.details).toBe(expected.message);
      expect(lines).toHaveLength(1);
      const [line] = lines;
      expect(line.level).toBe('error');
      expect(line.fields.method).toBe('/eraftkv.ERaftKv/ProcessRWOperation');
      expect(line.fields.error).toBe(expected.message);
      expect(line.fields.stack).toContain(`${expected.name}: ${expected.message}`);
      expect(line.fields.stack).toContain('handlerThatThrows');
    },
  );

  it('answers a failure of the node INTERNAL and logs it too', async () => {
    const err = await call('storage-failure');
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(err.details).toBe('sync /data/state failed: EIO');
    expect(lines.map((l) => l.fields.stack)).toEqual([
      expect.stringContaining('StorageEngineError: sync /data/state failed: EIO'),
    ]);
  });

  it('answers a routing outcome that no handler turned into a response as a bug', async () => {
    const err = await call('escaped-not-leader');
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(lines).toHaveLength(1);
  });

  it.each([
    ['invalid', grpc.status.INVALID_ARGUMENT],
    ['busy', grpc.status.RESOURCE_EXHAUSTED],
    ['limit', grpc.status.RESOURCE_EXHAUSTED],
    ['stopped', grpc.status.UNAVAILABLE],
    ['dropped', grpc.status.ABORTED],
    ['data-dir', grpc.status.FAILED_PRECONDITION],
  ])('answers %s with status %i and its message, without logging', async (key, status) => {
    const err = await call(key);
    expect(err.code).toBe(status);
    expect(err.details).toBe(thrown[key]().message);
    expect(lines).toHaveLength(0);
  });

  it('answers corrupt storage DATA_LOSS, saying what to do', async () => {
    const err = await call('corrupt');
    expect(err.code).toBe(grpc.status.DATA_LOSS);
    expect(err.details).toBe(
      "this replica's data is corrupt: the RocksDB data in /data/state is corrupt; it reports itself unhealthy. " +
        'Read from another replica, and replace this one (remove it from its group, move its data dir away, add it back)',
    );
    expect(lines).toHaveLength(0);
  });

  it('answers routing outcomes and refusals in the response, with the leader when known', async () => {
    await expect(transfer('not-leader')).resolves.toMatchObject({
      errorCode: ErrorCode.NOT_LEADER,
      leaderId: 2,
      leaderAddress: '127.0.0.1:7002',
    });
    await expect(transfer('no-leader')).resolves.toMatchObject({
      errorCode: ErrorCode.NO_LEADER,
      leaderId: 0,
      leaderAddress: '',
    });
    await expect(transfer('transfer-failed')).resolves.toMatchObject({
      errorCode: ErrorCode.TRANSFER_FAILED,
      leaderAddress: '',
    });
    await expect(transfer('change-pending')).resolves.toMatchObject({
      errorCode: ErrorCode.MEMBERSHIP_CHANGE_PENDING,
    });
    await expect(transfer('busy-in-routing')).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
    });
    expect(lines).toHaveLength(0);
  });
});
