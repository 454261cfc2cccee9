// Backup: a consistent copy of a kv group's data (eraftkv-ctl snapshot save). The leader confirms
// its leadership with a ReadIndex, so the copy holds every write acknowledged before the call;
// its state machine then pins a RocksDB snapshot (backupCursor) and the keys of the slots the
// group owns stream out in chunks, each written only when the previous one has drained, so a
// slow reader holds one chunk of memory here, not the group's data.
import * as grpc from '@grpc/grpc-js';
import type { BackupChunk, BackupReq, KeyValue } from '@eraftkv/protocol';
import { NotLeaderError, type Logger, type RaftServer } from '@eraftkv/raft-server';
import { failureStatus, type AccessControl } from '@eraftkv/server-kit';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';

/** The default and the largest chunk a backup sends (key and value bytes). */
export const backupChunkBytesDefault = 1024 * 1024;
export const backupChunkBytesMax = 4 * 1024 * 1024;

export interface BackupServiceOptions {
  readonly groupId: number;
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  readonly access: AccessControl;
  readonly logger: Logger;
}

export function backupHandler(
  o: BackupServiceOptions,
): grpc.handleServerStreamingCall<BackupReq, BackupChunk> {
  return (call) => {
    serve(o, call).catch((err: unknown) => {
      const status =
        err instanceof NotLeaderError
          ? {
              status: grpc.status.FAILED_PRECONDITION,
              details: `${err.message} (group ${o.groupId})`,
            }
          : failureStatus(err, o.logger, 'Backup');
      call.emit('error', { code: status.status, details: status.details });
    });
  };
}

async function serve(
  o: BackupServiceOptions,
  call: grpc.ServerWritableStream<BackupReq, BackupChunk>,
): Promise<void> {
  // Every key of the group: an administrator's call (root with auth).
  o.access.requireAdmin(call, 'Backup');
  const req = call.request;
  if (req.groupId !== o.groupId) {
    call.emit('error', {
      code: grpc.status.INVALID_ARGUMENT,
      details: `group_id is ${req.groupId}, but this node serves group ${o.groupId}`,
    });
    return;
  }
  if (req.chunkBytes > backupChunkBytesMax) {
    call.emit('error', {
      code: grpc.status.INVALID_ARGUMENT,
      details: `chunk_bytes ${req.chunkBytes} is above ${backupChunkBytesMax}`,
    });
    return;
  }
  const chunkBytes = req.chunkBytes === 0 ? backupChunkBytesDefault : req.chunkBytes;
  await o.raft.readIndex();
  const cursor = await o.stateMachine.backupCursor();
  // Resolves when the chunk may be followed by another (or the reader is gone: the loop then
  // stops and the snapshot is released).
  const send = (chunk: BackupChunk): Promise<void> =>
    new Promise((resolve) => {
      if (call.write(chunk)) {
        resolve();
        return;
      }
      const done = (): void => {
        call.off('drain', done);
        call.off('cancelled', done);
        resolve();
      };
      call.once('drain', done);
      call.once('cancelled', done);
    });
  let kvs: KeyValue[] = [];
  let bytes = 0;
  let keys = 0;
  let first = true;
  const chunk = (done: boolean): BackupChunk => {
    const c: BackupChunk = {
      index: cursor.index,
      configVersion: cursor.configVersion,
      slots: first ? cursor.slots : [],
      kvs,
      done,
      keys: done ? keys : 0,
    };
    first = false;
    kvs = [];
    bytes = 0;
    return c;
  };
  for await (const [key, value] of cursor.pairs) {
    if (call.cancelled) return;
    kvs.push({ key, value });
    keys++;
    bytes += key.length + value.length;
    if (bytes >= chunkBytes) await send(chunk(false));
  }
  await send(chunk(true));
  call.end();
}
