// ClusterConfigChange from a test: the fields it sets, the rest default, as a promise.
import * as grpc from '@grpc/grpc-js';
import {
  ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
  type ERaftKvClient,
  type Server,
  type Slot,
} from '@eraftkv/protocol';

/** The fields of a ClusterConfigChangeReq a test sets; the rest take their defaults. */
export type ConfigChangeFields = Partial<Omit<ClusterConfigChangeReq, 'server' | 'shardGroup'>> & {
  server?: Partial<Server>;
  shardGroup?: {
    id?: number;
    slots?: Partial<Slot>[];
    servers?: Partial<Server>[];
    leaderId?: number;
  };
};

/** Sends ClusterConfigChange with the given fields (the rest default). */
export function configChange(
  client: ERaftKvClient,
  fields: ConfigChangeFields,
  deadlineMs = 20_000,
): Promise<ClusterConfigChangeResp> {
  const req = ClusterConfigChangeReq.fromPartial(fields);
  return new Promise((resolve, reject) =>
    client.clusterConfigChange(
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, resp) => (err ? reject(err) : resolve(resp)),
    ),
  );
}
