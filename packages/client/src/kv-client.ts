// KvClient: the data operations of eraftkv (put, get, del, batch, scan). It routes every key by
// its slot through the session's cached topology and reaches the owning group's leader through the
// session's LeaderCaller. Every write carries (client id, command id), so a write retried after a
// lost answer applies once.
import {
  ClientOpType,
  ErrorCode,
  KvOpPair,
  ReadConsistency,
  type ClientOperationReq,
  type ClientOperationResp,
} from '@eraftkv/protocol';
import type { CallOptions, ClientSession, ReadOptions } from './client-session';
import { ClusterError, describeErrorCode, InvalidArgumentError, WrongShardError } from './errors';
import type { Verdict } from './leader-caller';
import { backoffMs, sleep } from './backoff';
import { leaseGroupOf } from './lease-id';

/**
 * After a WRONG_SHARD, the least time before the deadline worth another attempt: less than this,
 * and the attempt would most likely be cut by the deadline, its outcome unknown.
 */
const wrongShardAttemptFloorMs = 100;

export type Bytes = string | Uint8Array;

export interface KeyValue {
  readonly key: Buffer;
  readonly value: Buffer;
}

export interface ScanResult {
  /** Pairs in key-byte order. */
  readonly kvs: KeyValue[];
  /** More pairs remain after the last one returned. */
  readonly more: boolean;
}

export type BatchOp =
  | {
      readonly type: 'put';
      readonly key: Bytes;
      readonly value: Bytes;
      /**
       * Attaches the key to this lease (EraftKvClient.leaseGrant): the key is deleted when the
       * lease expires or is revoked. The lease must belong to the key's group; a put without one
       * detaches the key from the lease it had.
       */
      readonly lease?: number;
    }
  | { readonly type: 'get'; readonly key: Bytes }
  | { readonly type: 'del'; readonly key: Bytes };

export type BatchResult =
  | { readonly type: 'put' }
  | { readonly type: 'get'; readonly value: Buffer | undefined }
  | { readonly type: 'del'; readonly deleted: boolean };

/**
 * Which group served a request and its revision: for a write, the one it produced; for a read,
 * the state it saw. Each group numbers its own writes, so revisions of different groups are not
 * comparable.
 */
export interface ResponseHeader {
  readonly group: number;
  readonly revision: number;
}

export interface PutOptions extends CallOptions {
  /** Attaches the key to this lease (see BatchOp). */
  readonly lease?: number;
}

/** Turns user input into bytes: strings are UTF-8. */
export function toBytes(value: Bytes): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value)
    ? value
    : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

export class KvClient {
  constructor(private readonly session: ClientSession) {}

  /**
   * Writes `value` under `key` (attached to `options.lease` when given); returns the group and
   * the revision the write produced.
   */
  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<ResponseHeader> {
    const { lease, ...callOptions } = options;
    const op: BatchOp = { type: 'put', key, value, ...(lease === undefined ? {} : { lease }) };
    return (await this.batchWithHeader([op], callOptions)).header;
  }

  /** The value of `key`, or undefined when the key does not exist (an empty value exists). */
  async get(key: Bytes, options: ReadOptions = {}): Promise<Buffer | undefined> {
    const k = toBytes(key);
    const resp = await this.dataCall(
      [k],
      [{ ...emptyOp(), opType: ClientOpType.Get, key: k }],
      false,
      options,
    );
    const op = resp.ops[0];
    return op?.found ? op.value : undefined;
  }

  /** Deletes `key`; true if it existed. */
  async del(key: Bytes, options: CallOptions = {}): Promise<boolean> {
    const [result] = await this.batch([{ type: 'del', key }], options);
    return result.type === 'del' && result.deleted;
  }

  /**
   * The pairs with keys in [start, end) (end empty or omitted: no upper bound), in key-byte
   * order, at most `limit` (default 1000); `more` says that the limit stopped the scan before the
   * end. Keys live in every group, so each group is asked and the answers are merged. A server
   * answers at most its own bound per request (--scan-limit-max pairs, --response-bytes-max
   * bytes), so the scan continues in pages, each from the last key returned + 0x00, until it has
   * `limit` pairs or the range ends. The pages are separate reads: a scan that spans several
   * pages is not one point in time.
   */
  async scan(
    start: Bytes,
    end: Bytes | undefined,
    options: ReadOptions & { limit?: number } = {},
  ): Promise<ScanResult> {
    const limit = options.limit ?? 1000;
    if (!Number.isSafeInteger(limit) || limit <= 0)
      throw new InvalidArgumentError(`limit must be a positive integer, got ${limit}`);
    const endKey = end === undefined ? Buffer.alloc(0) : toBytes(end);
    const deadline = this.session.deadline(options);
    const kvs: KeyValue[] = [];
    let from = toBytes(start);
    for (let round = 1; ; round++) {
      const result = await this.scanGroups(from, endKey, limit, kvs, options, deadline);
      if (result.kind === 'done') return { kvs, more: result.more };
      // A group answered WRONG_SHARD: the topology moved under the scan, or the group has not
      // applied the config the scan was routed by yet. The pairs taken so far are final (each
      // came before every pair not yet taken); go on after the last one.
      await this.afterWrongShard(result.configVersion, round, deadline, 'the scan');
      if (kvs.length > 0) from = keyAfter(kvs[kvs.length - 1].key);
    }
  }

  /**
   * After a WRONG_SHARD answer of a group at `serverVersion` (the topology was refreshed as it
   * came): when the group and the meta group's topology are at different config versions, one of
   * them has not caught up yet (a group learns a new config within about one poll of the meta
   * group) and asking again at once would get the same answer, so this pauses first, longer on
   * each round; at one version the refreshed topology routes elsewhere, at once the first time.
   * When the pause would leave less than `wrongShardAttemptFloorMs` before the deadline, no
   * further attempt is made: it waits the deadline out and throws WrongShardError, naming both
   * versions (an attempt cut by the deadline would turn a clear refusal into a timeout whose
   * outcome is unknown).
   */
  private async afterWrongShard(
    serverVersion: number,
    round: number,
    deadline: number,
    what: string,
  ): Promise<void> {
    const clientVersion = this.session.topologyVersion();
    const pause =
      serverVersion !== clientVersion || round > 1 ? backoffMs(round, this.session.backoff) : 0;
    const left = deadline - Date.now();
    if (pause + wrongShardAttemptFloorMs < left) {
      if (pause > 0) await sleep(pause);
      return;
    }
    if (left > 0) await sleep(left);
    throw new WrongShardError(
      `${what} met a topology in motion until its deadline (last: a group at config version ` +
        `${serverVersion} refused it, the meta group is at ${clientVersion}); retry`,
    );
  }

  /**
   * Merges the groups' pages into `out` in key order until it holds `limit` pairs or every group
   * is done. A group's next page is fetched only once its current one is used up, since its next
   * key may come before the other groups' keys. Stops at a group's WRONG_SHARD answer, with the
   * config version it was at.
   */
  private async scanGroups(
    from: Buffer,
    endKey: Buffer,
    limit: number,
    out: KeyValue[],
    options: ReadOptions,
    deadline: number,
  ): Promise<{ kind: 'done'; more: boolean } | { kind: 'wrong-shard'; configVersion: number }> {
    const topology = await this.session.topology(false, deadline);
    const pagers: ScanPager[] = topology
      .dataGroups()
      .filter((g) => g.slots.length > 0)
      .map((g) => ({ groupId: g.id, page: [], taken: 0, next: from }));
    for (;;) {
      if (out.length === limit) {
        return {
          kind: 'done',
          more: pagers.some((p) => p.taken < p.page.length || p.next !== null),
        };
      }
      const used = pagers.filter((p) => p.taken === p.page.length && p.next !== null);
      const refills = await Promise.all(
        used.map((p) => this.scanPage(p, endKey, limit - out.length, options, deadline)),
      );
      const refused = refills.find((r) => r !== null);
      if (refused !== undefined) return { kind: 'wrong-shard', configVersion: refused };
      let best: ScanPager | null = null;
      for (const p of pagers) {
        if (p.taken === p.page.length) continue;
        if (best === null || Buffer.compare(p.page[p.taken].key, best.page[best.taken].key) < 0)
          best = p;
      }
      if (best === null) return { kind: 'done', more: false };
      out.push(best.page[best.taken++]);
    }
  }

  /**
   * Fetches a group's next page into its pager: null, or the group's config version when it
   * answered WRONG_SHARD.
   */
  private async scanPage(
    pager: ScanPager,
    endKey: Buffer,
    wanted: number,
    options: ReadOptions,
    deadline: number,
  ): Promise<number | null> {
    const from = pager.next;
    if (from === null) return null;
    // The version this scan was routed by: a group at another version refuses it (WRONG_SHARD
    // or STALE_SERVER_CONFIG) rather than pass over slots the two views disagree on.
    const configVersion = (await this.session.topology(false, deadline)).version;
    const resp = await this.groupCall(
      pager.groupId,
      {
        ...emptyRequest(),
        configVersion,
        kvs: [{ ...emptyOp(), opType: ClientOpType.Scan, key: from, endKey, limit: wanted }],
        readConsistency: options.serializable
          ? ReadConsistency.SERIALIZABLE
          : ReadConsistency.LINEARIZABLE,
      },
      false,
      deadline,
      options.serializable === true,
    );
    if (resp.errorCode === ErrorCode.WRONG_SHARD) return resp.configVersion;
    const op = resp.ops[0];
    const pairs = op?.kvs ?? [];
    if (op?.more === true && pairs.length === 0) {
      // A server returns at least one pair whenever more remain; anything else would loop.
      throw new ClusterError(
        ErrorCode.REJECTED,
        `group ${pager.groupId} answered a Scan with more pairs to come but none returned`,
      );
    }
    pager.page = pairs.map((kv) => ({ key: kv.key, value: kv.value }));
    pager.taken = 0;
    pager.next = op?.more === true ? keyAfter(pairs[pairs.length - 1].key) : null;
    return null;
  }

  /**
   * Several operations on keys of one group, applied atomically and in order (a get sees the
   * batch's earlier writes). Keys of different groups are refused with InvalidArgumentError.
   */
  async batch(ops: readonly BatchOp[], options: CallOptions = {}): Promise<BatchResult[]> {
    return (await this.batchWithHeader(ops, options)).results;
  }

  /** batch(), with the group that applied it and the revision it produced (or saw). */
  async batchWithHeader(
    ops: readonly BatchOp[],
    options: CallOptions = {},
  ): Promise<{ results: BatchResult[]; header: ResponseHeader }> {
    if (ops.length === 0) throw new InvalidArgumentError('a batch needs at least one operation');
    const keys = ops.map((op) => toBytes(op.key));
    const wire: KvOpPair[] = ops.map((op, i) => {
      switch (op.type) {
        case 'put':
          return {
            ...emptyOp(),
            opType: ClientOpType.Put,
            key: keys[i],
            value: toBytes(op.value),
            lease: leaseOf(op),
          };
        case 'get':
          return { ...emptyOp(), opType: ClientOpType.Get, key: keys[i] };
        case 'del':
          return { ...emptyOp(), opType: ClientOpType.Del, key: keys[i] };
      }
    });
    const writes = ops.some((op) => op.type !== 'get');
    const resp = await this.dataCall(keys, wire, writes, options);
    const results = ops.map((op, i): BatchResult => {
      const result = resp.ops[i];
      switch (op.type) {
        case 'put':
          return { type: 'put' };
        case 'get':
          return { type: 'get', value: result?.found ? result.value : undefined };
        case 'del':
          return { type: 'del', deleted: (result?.deleted ?? 0) > 0 };
      }
    });
    return { results, header: { group: resp.groupId, revision: resp.revision } };
  }

  private async dataCall(
    keys: Buffer[],
    ops: KvOpPair[],
    write: boolean,
    options: ReadOptions,
  ): Promise<ClientOperationResp> {
    const deadline = this.session.deadline(options);
    const request: ClientOperationReq = {
      ...emptyRequest(),
      kvs: ops,
      // The same (client id, command id) on every attempt: the servers apply the write once.
      clientId: write ? this.session.clientId : '',
      commandId: write ? this.session.nextCommandId() : 0,
      readConsistency: options.serializable
        ? ReadConsistency.SERIALIZABLE
        : ReadConsistency.LINEARIZABLE,
    };
    let refreshed = false;
    // Whether a group has seen this request: a write sent once may have been applied there (an
    // attempt that timed out), so a refusal after that must not read as "never applied".
    let sent = false;
    for (let round = 1; ; round++) {
      const topology = await this.session.topology(false, deadline);
      const groups = new Set(keys.map((k) => topology.groupOf(k)));
      if ((groups.size > 1 || groups.has(0)) && write && sent) {
        throw new WrongShardError(
          `the keys of this write moved to different groups (${[...groups].join(', ')}) while it ` +
            'was retried: its outcome is unknown (it may have been applied before the move)',
        );
      }
      if (groups.size > 1 || groups.has(0)) {
        // Maybe the cached topology is stale: look again once before refusing.
        if (!refreshed) {
          refreshed = true;
          await this.session.topology(true, deadline);
          continue;
        }
        if (groups.has(0)) {
          const key = keys.find((k) => topology.groupOf(k) === 0)!;
          throw new ClusterError(
            ErrorCode.WRONG_SHARD,
            `slot ${topology.slotOf(key)} of key ${JSON.stringify(key.toString())} belongs to no group: ` +
              "assign slots with 'eraftkv-ctl slot move' (npm start gives every slot to group 1)",
          );
        }
        throw new InvalidArgumentError(
          `the keys of one request must belong to one group; these span groups ${[...groups].join(', ')}`,
        );
      }
      const [groupId] = groups;
      sent = true;
      const resp = await this.groupCall(
        groupId,
        request,
        write,
        deadline,
        options.serializable === true,
      );
      if (resp.errorCode === ErrorCode.WRONG_SHARD) {
        // groupCall refreshed the topology; route again.
        await this.afterWrongShard(resp.configVersion, round, deadline, 'the request');
        continue;
      }
      return resp;
    }
  }

  /**
   * Sends a data request to a group: to its leader (or, for serializable reads, any member),
   * following NOT_LEADER hints and retrying until the deadline. Returns the first answer that is
   * OK or WRONG_SHARD (after refreshing the topology).
   */
  private groupCall(
    groupId: number,
    request: ClientOperationReq,
    write: boolean,
    deadline: number,
    anyReplica: boolean,
  ): Promise<ClientOperationResp> {
    const { session } = this;
    return session.caller.call({
      ...session.groupRouting(groupId, deadline),
      send: (address, timeoutMs) => session.connections.processRw(address, request, timeoutMs),
      judge: dataVerdict,
      deadline,
      write,
      anyReplica,
      onWrongShard: async () => {
        await session.topology(true, deadline);
      },
    });
  }
}

/** What a data answer means. */
function dataVerdict(resp: ClientOperationResp): Verdict {
  if (resp.errorCode === ErrorCode.WRONG_SHARD)
    return { kind: 'wrong-shard', configVersion: resp.configVersion };
  return kvAnswerVerdict(resp);
}

/**
 * What an answer of a kv group member means (data, lease and keep-alive answers alike), wrong
 * shards aside: NOT_LEADER follows the leader named, a member that cannot serve now is tried
 * again after a pause, any other error ends the call.
 */
export function kvAnswerVerdict(resp: {
  readonly errorCode: ErrorCode;
  readonly leaderAddress: string;
  readonly errorMessage: string;
}): Verdict {
  switch (resp.errorCode) {
    case ErrorCode.OK:
      return { kind: 'answer' };
    case ErrorCode.NOT_LEADER:
      return { kind: 'redirect', hint: resp.leaderAddress };
    case ErrorCode.NO_LEADER:
    case ErrorCode.BUSY:
    case ErrorCode.SNAPSHOTTING:
    case ErrorCode.STALE_SERVER_CONFIG:
      return { kind: 'retry', problem: describeErrorCode(resp.errorCode), rotate: true };
    case ErrorCode.SLOT_MIGRATING:
      // The same server, after a backoff: the move commits within the copy of its batch.
      return { kind: 'retry', problem: describeErrorCode(resp.errorCode), rotate: false };
    default:
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}: ${resp.errorMessage}`,
      );
  }
}

/** The lease a put names on the wire (0: none), checked to be a lease id. */
function leaseOf(op: { readonly lease?: number }): number {
  if (op.lease === undefined || op.lease === 0) return 0;
  leaseGroupOf(op.lease);
  return op.lease;
}

/** Where a group's scan goes on: its page, how much of it is merged, where its next page starts. */
interface ScanPager {
  readonly groupId: number;
  page: KeyValue[];
  taken: number;
  /** The start of the next page; null once the group has no more pairs in the range. */
  next: Buffer | null;
}

/** The smallest key after `key` in byte order. */
function keyAfter(key: Buffer): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}

function emptyOp(): KvOpPair {
  return KvOpPair.fromPartial({});
}

function emptyRequest(): ClientOperationReq {
  return {
    opTimestamp: 0,
    clientId: '',
    commandId: 0,
    kvs: [],
    readConsistency: ReadConsistency.LINEARIZABLE,
    configVersion: 0,
    requestId: 0,
  };
}
