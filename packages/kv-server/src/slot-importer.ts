// The target side of a slot move (docs/slot-migration.md, step 3), run by the target group's
// leader when the meta leader asks (SlotImport): begin the import in the group's log, then pull
// the source's frozen slots chunk by chunk (SlotExport, from any source replica that has applied
// the freeze) and propose each chunk, until the import is complete or the call's time is nearly
// up. Everything it has done is in the log, so a call that ends early, a new leader or a restart
// resumes from the import's applied progress. One run per import at a time: a second call for
// the same import waits for the first.
import {
  ErrorCode,
  type SlotExportResp,
  type SlotImportReq,
  type SlotImportResp,
} from '@eraftkv/protocol';
import type { LeaderCaller, LeaderHint } from '@eraftkv/client';
import { InvalidArgumentError, type Logger, type RaftServer } from '@eraftkv/raft-server';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';
import { encodeImportBegin, encodeImportChunk } from './kv-commands';

export interface SlotImporterOptions {
  readonly groupId: number;
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  /** Calls the source group's replicas (see groupCaller in server-kit); closed by stop(). */
  readonly sources: LeaderCaller;
  readonly logger: Logger;
  /** About how many bytes one chunk carries (a log entry each). */
  readonly chunkBytes?: number;
  /** One SlotExport attempt against one source replica. */
  readonly attemptMs?: number;
  /** Reads the topology from the meta group now and proposes a newer config (ConfigWatcher). */
  readonly catchUp?: () => Promise<void>;
  /**
   * The largest client entry the group takes (--entry-bytes-max). A chunk is at most its budget
   * plus one pair (itself at most this), so a larger one is refused rather than proposed: an
   * entry too large to replicate would stop the group.
   */
  readonly entryBytesMax?: number;
}

/** A replica that has not applied the freeze (or has moved past the move) says REJECTED: ask another. */
const exportHint: LeaderHint<SlotExportResp> = (resp) =>
  resp.errorCode === ErrorCode.REJECTED ? '' : null;

/** The most a chunk's budget may be (and so the most a chunk exceeds --entry-bytes-max by). */
const chunkBytesMax = 1024 * 1024;

/** How long before its deadline a call stops pulling and says how far it got. */
const answerMarginMs = 1000;

export class SlotImporter {
  private readonly running = new Map<string, Promise<SlotImportResp>>();
  private stopped = false;

  constructor(private readonly options: SlotImporterOptions) {}

  /** Runs (or joins) the import `req` until it is complete or `deadline` (ms since the epoch) nears. */
  import(req: SlotImportReq, deadline: number): Promise<SlotImportResp> {
    if (req.targetShardId !== this.options.groupId) {
      throw new InvalidArgumentError(
        `target_shard_id ${req.targetShardId} is not this group (${this.options.groupId})`,
      );
    }
    const id = `${req.configVersion}/${req.sourceShardId}`;
    const existing = this.running.get(id);
    if (existing !== undefined) return existing;
    const run = this.run(req, deadline).finally(() => this.running.delete(id));
    this.running.set(id, run);
    return run;
  }

  stop(): void {
    this.stopped = true;
    this.options.sources.close();
  }

  private async run(req: SlotImportReq, deadline: number): Promise<SlotImportResp> {
    const { raft, stateMachine, logger } = this.options;
    const refused = (message: string): SlotImportResp => {
      logger.warn('slot import refused', {
        source: req.sourceShardId,
        version: req.configVersion,
        error: message,
      });
      return refusedAnswer(message);
    };
    const refusedAnswer = (message: string): SlotImportResp => ({
      errorCode: ErrorCode.REJECTED,
      errorMessage: message,
      leaderAddress: '',
      done: false,
      keys: 0,
      bytes: 0,
    });
    // The move's config may not have reached this group yet: ask the meta group now rather than
    // wait for the next poll.
    if (stateMachine.configVersion() < req.configVersion) await this.options.catchUp?.();
    const applied = stateMachine.configVersion();
    if (applied < req.configVersion) {
      return refused(
        `group ${this.options.groupId} has applied config version ${applied}, not yet the move's ${req.configVersion}; retry shortly`,
      );
    }
    const begun = await raft.propose(
      encodeImportBegin({
        source: req.sourceShardId,
        version: req.configVersion,
        slots: req.slots,
      }),
    );
    if (begun?.kind !== 'moved') return refused(resultMessage(begun));
    let bytes = 0;
    for (;;) {
      const progress = stateMachine.importProgress(req.configVersion, req.sourceShardId);
      if (progress === undefined)
        return refused('the import ended before it was complete (the move was settled)');
      const answer = (done: boolean): SlotImportResp => ({
        errorCode: ErrorCode.OK,
        errorMessage: '',
        leaderAddress: '',
        done,
        keys: progress.keys,
        bytes,
      });
      if (progress.done) return answer(true);
      if (this.stopped || Date.now() >= deadline - answerMarginMs) return answer(false);
      const resp = await this.options.sources.callLeader(
        req.sourceShardId,
        req.sourceAddresses,
        (client) => client.slotExport.bind(client),
        {
          sourceShardId: req.sourceShardId,
          configVersion: req.configVersion,
          slots: [...progress.slots],
          nextSlot: progress.nextSlot,
          afterKey: progress.afterKey,
          dedupAfter: progress.dedupAfter,
          budgetBytes: Math.min(this.options.chunkBytes ?? 512 * 1024, chunkBytesMax),
        },
        exportHint,
        {
          deadline: deadline - answerMarginMs,
          attemptTimeoutMs: this.options.attemptMs ?? 5000,
          write: false,
        },
      );
      if (resp.errorCode !== ErrorCode.OK || resp.chunk === undefined) {
        return refused(
          `source group ${req.sourceShardId} did not export: ${resp.errorMessage || ErrorCode[resp.errorCode]}`,
        );
      }
      const chunk = resp.chunk;
      if (chunk.sourceShardId !== req.sourceShardId || chunk.configVersion !== req.configVersion) {
        return refused(
          `source group ${req.sourceShardId} answered with a chunk of another move (group ${chunk.sourceShardId}, version ${chunk.configVersion})`,
        );
      }
      const entry = encodeImportChunk(chunk);
      const entryMax = (this.options.entryBytesMax ?? 4 * 1024 * 1024) + chunkBytesMax;
      if (entry.length > entryMax) {
        return refused(
          `source group ${req.sourceShardId} sent a chunk of ${entry.length} bytes, more than the ${entryMax} a chunk can need (--entry-bytes-max plus the chunk budget)`,
        );
      }
      const result = await raft.propose(entry);
      if (result?.kind !== 'moved') return refused(resultMessage(result));
      bytes += chunk.pairs.reduce((n, p) => n + p.key.length + p.value.length, 0);
      logger.debug('imported a chunk', {
        source: req.sourceShardId,
        version: req.configVersion,
        pairs: chunk.pairs.length,
        records: chunk.dedup.length,
        done: chunk.done,
      });
    }
  }
}

function resultMessage(result: KvApplyResult | undefined): string {
  if (result === undefined) return 'the entry applied without a result';
  if (result.kind === 'rejected' || result.kind === 'wrong-shard') return result.message;
  return `unexpected result ${result.kind}`;
}
