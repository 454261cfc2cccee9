// Step 3 of a slot move on the wire (docs/slot-migration.md): ask the target group's leader to
// import a batch from its source (SlotImport), again and again until the target says the import
// is complete, within a deadline. Each call resumes where the last one stopped: the target keeps
// the import's progress in its own log. One LeaderCaller per target group follows NOT_LEADER hints.
import type { ChannelCredentials } from '@grpc/grpc-js';
import { ErrorCode, type SlotImportReq, type SlotImportResp } from '@eraftkv/protocol';
import {
  TimeoutError,
  UnavailableError,
  type LeaderCaller,
  type LeaderHint,
} from '@eraftkv/client';
import { groupCaller } from '@eraftkv/server-kit';
import { kvGroupLeaderHint } from './source-group-client';

/** What the target said in the end. */
export type ImportVerdict =
  | { readonly ok: true; readonly keys: number; readonly bytes: number }
  | { readonly ok: false; readonly message: string };

export interface ImportBatch {
  readonly target: number;
  readonly targetAddresses: readonly string[];
  readonly source: number;
  readonly sourceAddresses: readonly string[];
  /** The meta config version at which the batch began to move. */
  readonly version: number;
  readonly slots: readonly number[];
}

/** How the coordinator reaches a target group (an interface, so tests can replace the network). */
export interface TargetGroupClient {
  /** Runs the import of `batch` to completion, or says why not; never rejects. */
  importBatch(batch: ImportBatch): Promise<ImportVerdict>;
  close(): void;
}

/** NOT_LEADER names the leader; without one, ask again (see kvGroupLeaderHint). */
const targetLeaderHint: LeaderHint<SlotImportResp> = kvGroupLeaderHint;

export class GrpcTargetGroupClient implements TargetGroupClient {
  private readonly callers = new Map<number, LeaderCaller>();
  private closed = false;

  constructor(
    private readonly options: {
      /** The whole import of one batch, all calls included. */
      readonly deadlineMs: number;
      /** One SlotImport call (the target answers before it, saying how far it got). */
      readonly callMs: number;
      /** What kv groups are dialed with (TLS with the node's peer certificate). */
      readonly credentials?: ChannelCredentials;
      /** The pause before asking again after a REJECTED answer. */
      readonly retryPauseMs?: number;
      /** Told why an attempt failed (the import is asked again until its deadline). */
      readonly onProblem?: (batch: ImportBatch, problem: string) => void;
    },
  ) {}

  async importBatch(batch: ImportBatch): Promise<ImportVerdict> {
    const deadline = Date.now() + this.options.deadlineMs;
    let caller = this.callers.get(batch.target);
    if (caller === undefined) {
      caller = groupCaller({ credentials: this.options.credentials });
      this.callers.set(batch.target, caller);
    }
    const req: SlotImportReq = {
      targetShardId: batch.target,
      sourceShardId: batch.source,
      configVersion: batch.version,
      slots: [...batch.slots],
      sourceAddresses: [...batch.sourceAddresses],
    };
    let bytes = 0;
    let lastProblem = '';
    while (!this.closed && Date.now() < deadline) {
      let resp: SlotImportResp;
      try {
        resp = await caller.callLeader(
          batch.target,
          batch.targetAddresses,
          (client) => client.slotImport.bind(client),
          req,
          targetLeaderHint,
          {
            deadline: Math.min(deadline, Date.now() + this.options.callMs + 1000),
            attemptTimeoutMs: this.options.callMs,
            write: true,
          },
        );
      } catch (err) {
        lastProblem = (err as Error).message;
        // Unreachable or slow: ask again. Anything else (the target cannot import at all) is final.
        if (!(err instanceof UnavailableError || err instanceof TimeoutError)) {
          return { ok: false, message: `group ${batch.target} cannot import: ${lastProblem}` };
        }
        await this.pause();
        continue;
      }
      if (resp.errorCode === ErrorCode.OK) {
        bytes += resp.bytes;
        if (resp.done) return { ok: true, keys: resp.keys, bytes };
        continue;
      }
      lastProblem = resp.errorMessage || (ErrorCode[resp.errorCode] ?? String(resp.errorCode));
      this.options.onProblem?.(batch, lastProblem);
      await this.pause();
    }
    return {
      ok: false,
      message: this.closed
        ? 'the meta server is stopping; the import was not finished'
        : `the import into group ${batch.target} did not finish within ${this.options.deadlineMs} ms${lastProblem === '' ? '' : ` (last: ${lastProblem})`}`,
    };
  }

  private pause(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.options.retryPauseMs ?? 200));
  }

  close(): void {
    this.closed = true;
    for (const caller of this.callers.values()) caller.close();
    this.callers.clear();
  }
}
