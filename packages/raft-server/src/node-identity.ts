// The identity of a data dir: which cluster, kind of server, group and node it belongs to, and
// its incarnation, a random number drawn when the data dir is created (etcd's member id plays
// this part). It lives in <data-dir>/identity.json, written once, before anything else.
//
// Why an incarnation: Raft's safety rests on every node keeping what it promised (its vote, the
// entries it acknowledged). A node whose data dir was wiped and that rejoined under its old id
// could vote twice in a term and be counted for entries it no longer has. With incarnations, the
// group's membership records which data dir each member is; a new data dir is a new incarnation,
// which peers refuse to count until an operator has removed the node and added it again.
import { randomInt } from 'node:crypto';
import { access, mkdir, open, readFile, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ErrorCode } from '@eraftkv/protocol';
import { EraftError } from './errors';

export type NodeKind = 'meta' | 'kv';

/** What a process claims to be (from its flags): checked against the data dir's identity. */
export interface NodeClaim {
  readonly clusterId: string;
  readonly kind: NodeKind;
  readonly groupId: number;
  readonly nodeId: number;
}

export interface NodeIdentity extends NodeClaim {
  /** Drawn at random when the data dir was created, in [1, 2^47). */
  readonly incarnation: number;
  /** When the data dir was created (ISO 8601, informational). */
  readonly createdAt: string;
}

export const identityFileName = 'identity.json';
const formatVersion = 1;

/**
 * Present in a data dir that eraftkv-utl snapshot restore built and has not yet finished with
 * (the restore renames every node's dir into place, then removes this file from each): a node
 * never starts on one, since the other dirs of its cluster may be missing.
 */
export const restoreMarkerFileName = 'restore-incomplete';

/** The entries of a data dir that hold a node's state: their presence means "not new". */
const stateEntries = ['raft-log', 'snapshots', 'state'];

/** The data dir cannot be used by this process; the message says why and what to do. */
export class DataDirError extends EraftError {
  override name = 'DataDirError';
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.OK, grpc.status.FAILED_PRECONDITION, message, options);
  }
}

/**
 * Opens the identity of `dataDir`, creating the dir and its identity for a new node. Refuses, with
 * a DataDirError naming both values, a data dir that belongs to another cluster, kind, group or
 * node, and a data dir that holds state but no identity (it cannot be told apart from a copy).
 */
export async function openNodeIdentity(
  dataDir: string,
  claim: NodeClaim,
): Promise<{ identity: NodeIdentity; created: boolean }> {
  const path = join(dataDir, identityFileName);
  const marker = join(dataDir, restoreMarkerFileName);
  if (
    await access(marker).then(
      () => true,
      () => false,
    )
  ) {
    throw new DataDirError(
      `data dir ${dataDir} was being built by eraftkv-utl snapshot restore, which did not finish (${marker}): ` +
        `run the same restore again (it replaces the data dirs it left unfinished)`,
    );
  }
  let raw: string | undefined;
  try {
    raw = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DataDirError(`cannot read ${path}: ${(err as Error).message}`);
    }
  }
  if (raw === undefined) {
    await refuseStateWithoutIdentity(dataDir);
    const identity: NodeIdentity = {
      ...claim,
      incarnation: randomInt(1, peerIncarnationMax),
      createdAt: new Date().toISOString(),
    };
    await writeIdentity(dataDir, identity);
    return { identity, created: true };
  }
  const identity = parseIdentity(raw, path);
  checkClaim(identity, claim, dataDir);
  return { identity, created: false };
}

/**
 * Creates the identity of a new data dir that is being built outside a running node (eraftkv-utl
 * snapshot restore): a fresh incarnation, written first, as openNodeIdentity does. Refuses a
 * dir that already has an identity or holds a node's state.
 */
export async function createNodeIdentity(dataDir: string, claim: NodeClaim): Promise<NodeIdentity> {
  const { identity, created } = await openNodeIdentity(dataDir, claim);
  if (!created) {
    throw new DataDirError(
      `data dir ${dataDir} already has an identity (${identityFileName}): it belongs to a node`,
    );
  }
  return identity;
}

/** Incarnations are drawn below 2^47 (peers accept up to 2^48 - 1). */
const peerIncarnationMax = 2 ** 47;

async function refuseStateWithoutIdentity(dataDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new DataDirError(`cannot read data dir ${dataDir}: ${(err as Error).message}`);
  }
  const state = entries.filter((e) => stateEntries.includes(e));
  if (state.length > 0) {
    throw new DataDirError(
      `data dir ${dataDir} holds a node's state (${state.join(', ')}) but no ${identityFileName}: ` +
        `it was written by an older eraftkv or the file was deleted, and which node it belongs to cannot be told. ` +
        `Move the data dir aside and start the node with an empty one (remove the node from its group and add it again)`,
    );
  }
}

async function writeIdentity(dataDir: string, identity: NodeIdentity): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true });
    const path = join(dataDir, identityFileName);
    const tmp = `${path}.tmp`;
    const text = `${JSON.stringify({ format: formatVersion, ...identity }, null, 2)}\n`;
    const file = await open(tmp, 'w');
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
    // The rename is durable only once the directory is synced.
    const dir = await open(dataDir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (err) {
    throw new DataDirError(
      `cannot create the identity of data dir ${dataDir}: ${(err as Error).message}`,
    );
  }
}

function parseIdentity(raw: string, path: string): NodeIdentity {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new DataDirError(`${path} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DataDirError(`${path} does not hold a JSON object`);
  }
  const record = value as Record<string, unknown>;
  const field = <T>(name: string, ok: (v: unknown) => v is T, expected: string): T => {
    const v = record[name];
    if (!ok(v)) {
      throw new DataDirError(
        `${path}: field "${name}" must be ${expected}, found ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  const isString = (v: unknown): v is string => typeof v === 'string';
  const isCount =
    (min: number) =>
    (v: unknown): v is number =>
      typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v < peerIncarnationMax;
  const format = field('format', isCount(1), 'a format version');
  if (format !== formatVersion) {
    throw new DataDirError(
      `${path}: format ${format} is not one this eraftkv reads (${formatVersion})`,
    );
  }
  const kind = field(
    'kind',
    (v: unknown): v is NodeKind => v === 'meta' || v === 'kv',
    '"meta" or "kv"',
  );
  return {
    clusterId: field('clusterId', isString, 'a string'),
    kind,
    groupId: field('groupId', isCount(0), 'a group id'),
    nodeId: field('nodeId', isCount(1), 'a positive node id'),
    incarnation: field('incarnation', isCount(1), 'a positive integer below 2^47'),
    createdAt: field('createdAt', isString, 'a date'),
  };
}

function describe(c: NodeClaim): string {
  return `${c.kind} node ${c.nodeId} of group ${c.groupId} in cluster "${c.clusterId}"`;
}

function checkClaim(identity: NodeIdentity, claim: NodeClaim, dataDir: string): void {
  const differences: string[] = [];
  if (identity.kind !== claim.kind) {
    differences.push(
      `it is a ${identity.kind} data dir, not ${claim.kind} (eraftkv-${claim.kind})`,
    );
  }
  if (identity.clusterId !== claim.clusterId) {
    differences.push(
      `--cluster-id is "${claim.clusterId}", the data dir's is "${identity.clusterId}"`,
    );
  }
  if (identity.groupId !== claim.groupId && claim.kind === 'kv') {
    differences.push(`--group is ${claim.groupId}, the data dir's is ${identity.groupId}`);
  }
  if (identity.nodeId !== claim.nodeId) {
    differences.push(`--id is ${claim.nodeId}, the data dir's is ${identity.nodeId}`);
  }
  if (differences.length === 0) return;
  throw new DataDirError(
    `data dir ${dataDir} belongs to ${describe(identity)} (${identityFileName}), not to ${describe(claim)}: ` +
      `${differences.join('; ')}. Start the node with the flags its data dir was created with, or give it another --data-dir`,
  );
}
