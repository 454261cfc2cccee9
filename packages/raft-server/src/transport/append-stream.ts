// The sending side of AppendEntriesStream: appends to one peer pipelined over a long-lived gRPC
// stream, answered in order. A new HTTP/2 stream per append (a unary call) costs more CPU than
// the append itself; one stream per channel costs a frame per append.
import * as grpc from '@grpc/grpc-js';
import type { AppendEntriesReq, AppendEntriesResp, ERaftKvClient } from '@eraftkv/protocol';

interface PendingAppend {
  readonly req: AppendEntriesReq;
  readonly deadlineMs: number;
  readonly resolve: (resp: AppendEntriesResp) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

type Call = grpc.ClientDuplexStream<AppendEntriesReq, AppendEntriesResp>;

function failure(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(`${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata: new grpc.Metadata(),
  });
}

export class AppendStream {
  private call: Call | null = null;
  private readonly pending: PendingAppend[] = [];
  /** The peer does not serve the stream (an older version): use unary calls. */
  private unsupported = false;

  constructor(private readonly client: ERaftKvClient) {}

  /**
   * Sends one append; resolves with its response. A response missing its deadline breaks the
   * stream: every append in flight on it fails, and the next one opens a new stream.
   */
  send(req: AppendEntriesReq, deadlineMs: number): Promise<AppendEntriesResp> {
    if (this.unsupported) return this.unary(req, deadlineMs);
    const call = this.open();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.broken(call, failure(grpc.status.DEADLINE_EXCEEDED, 'no append response in time')),
        deadlineMs,
      );
      this.pending.push({ req, deadlineMs, resolve, reject, timer });
      call.write(req);
    });
  }

  close(): void {
    const call = this.call;
    if (call !== null) this.broken(call, failure(grpc.status.CANCELLED, 'the peer was closed'));
  }

  private open(): Call {
    if (this.call !== null) return this.call;
    const call = this.client.appendEntriesStream();
    call.on('data', (resp: AppendEntriesResp) => {
      if (this.call !== call) return;
      const head = this.pending.shift();
      if (head === undefined) {
        this.broken(call, failure(grpc.status.INTERNAL, 'an append response nothing asked for'));
        return;
      }
      clearTimeout(head.timer);
      head.resolve(resp);
    });
    call.on('error', (err: grpc.ServiceError) => this.broken(call, err));
    call.on('end', () =>
      this.broken(call, failure(grpc.status.UNAVAILABLE, 'the peer ended the append stream')),
    );
    this.call = call;
    return call;
  }

  private broken(call: Call, err: grpc.ServiceError): void {
    if (this.call !== call) return;
    this.call = null;
    call.cancel();
    if (err.code === grpc.status.UNIMPLEMENTED) this.unsupported = true;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      if (this.unsupported) this.unary(p.req, p.deadlineMs).then(p.resolve, p.reject);
      else p.reject(err);
    }
  }

  private unary(req: AppendEntriesReq, deadlineMs: number): Promise<AppendEntriesResp> {
    return new Promise((resolve, reject) => {
      this.client.appendEntries(
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, resp) => (err ? reject(err) : resolve(resp)),
      );
    });
  }
}
