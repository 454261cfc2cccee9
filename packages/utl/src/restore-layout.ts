// The layout of the cluster that eraftkv-utl snapshot restore builds: its cluster id and every
// node (meta group and kv groups) with the address it will advertise and the data dir to create
// for it. A YAML (or JSON) file:
//
//   cluster-id: eraftkv-restored
//   meta:
//     - { id: 1, address: "meta-1.example:8088", data-dir: /var/lib/eraftkv/meta-1 }
//   kv:
//     - { group: 1, id: 1, address: "kv-1-1.example:7088", data-dir: /var/lib/eraftkv/kv-1-1 }
//
// A relative data-dir is taken from the layout file's directory. Every mistake is refused naming
// the file and the entry, before anything is written.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface LayoutNode {
  readonly kind: 'meta' | 'kv';
  /** 0 for the meta group. */
  readonly group: number;
  readonly id: number;
  readonly address: string;
  /** Absolute. */
  readonly dataDir: string;
}

export interface RestoreLayout {
  /** The new cluster's id; null when the file has none (the --cluster-id flag then must). */
  readonly clusterId: string | null;
  readonly meta: readonly LayoutNode[];
  /** Every kv node, by group then id. */
  readonly kv: readonly LayoutNode[];
}

/** A layout file that cannot be used: the message names the file and the entry at fault. */
export class LayoutError extends Error {
  override name = 'LayoutError';
}

/** The largest layout file read (a few lines per node). */
const layoutBytesMax = 1024 * 1024;
/** Node and group ids, as the servers' --id and --group accept them. */
const idMax = 2 ** 31 - 1;
const addressPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const wildcardHosts = new Set(['0.0.0.0', '[::]', '::', '']);

export async function readRestoreLayout(path: string): Promise<RestoreLayout> {
  let text: string;
  try {
    const bytes = await readFile(path);
    if (bytes.length > layoutBytesMax)
      throw new Error(`it is ${bytes.length} bytes, more than ${layoutBytesMax}`);
    text = bytes.toString('utf8');
  } catch (err) {
    throw new LayoutError(`--layout ${path}: cannot be read: ${(err as Error).message}`);
  }
  return parseRestoreLayout(text, path);
}

/** Parses and checks a layout; `path` names it in errors and anchors relative data dirs. */
export function parseRestoreLayout(text: string, path: string): RestoreLayout {
  const fail = (what: string): never => {
    throw new LayoutError(`--layout ${path}: ${what}`);
  };
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    return fail(`not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    return fail('must be a map with the keys cluster-id, meta and kv');
  const root = doc as Record<string, unknown>;
  for (const key of Object.keys(root)) {
    if (!['cluster-id', 'meta', 'kv'].includes(key))
      fail(`unknown key "${key}" (the keys are cluster-id, meta and kv)`);
  }
  let clusterId: string | null = null;
  if (root['cluster-id'] !== undefined) {
    const id = root['cluster-id'];
    if (typeof id !== 'string' || id.length === 0 || id.length > 256)
      fail('cluster-id must be a non-empty string of at most 256 characters');
    clusterId = id as string;
  }
  const base = dirname(resolve(path));
  const nodes = (key: 'meta' | 'kv'): LayoutNode[] => {
    const list = root[key];
    if (!Array.isArray(list) || list.length === 0)
      return fail(`"${key}" must be a list of at least one node`);
    return (list as unknown[]).map((entry, i) => node(entry, `${key}[${i}]`, key));
  };
  const node = (entry: unknown, at: string, kind: 'meta' | 'kv'): LayoutNode => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      return fail(
        `${at} must be a map with the keys ${kind === 'kv' ? 'group, ' : ''}id, address and data-dir`,
      );
    const e = entry as Record<string, unknown>;
    const allowed =
      kind === 'kv' ? ['group', 'id', 'address', 'data-dir'] : ['id', 'address', 'data-dir'];
    for (const key of Object.keys(e)) {
      if (!allowed.includes(key))
        fail(`${at}: unknown key "${key}" (the keys are ${allowed.join(', ')})`);
    }
    const id = (name: string): number => {
      const v = e[name];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > idMax)
        fail(`${at}: ${name} must be an integer in 1..${idMax}`);
      return v as number;
    };
    const address = e.address;
    if (typeof address !== 'string') return fail(`${at}: address must be host:port`);
    const m = addressPattern.exec(address);
    const port = m === null ? 0 : Number(m[1]);
    if (port < 1 || port > 65535)
      fail(`${at}: address "${address}" is not host:port (with a port in 1..65535)`);
    const host = address.slice(0, address.lastIndexOf(':'));
    if (wildcardHosts.has(host))
      fail(`${at}: address "${address}" is a wildcard; give the address peers and clients dial`);
    const dataDir = e['data-dir'];
    if (typeof dataDir !== 'string' || dataDir.length === 0)
      return fail(`${at}: data-dir must be a path`);
    return {
      kind,
      group: kind === 'kv' ? id('group') : 0,
      id: id('id'),
      address,
      dataDir: resolve(base, dataDir),
    };
  };
  const meta = nodes('meta');
  const kv = nodes('kv').sort((a, b) => a.group - b.group || a.id - b.id);
  const all = [...meta, ...kv];
  const seen = new Map<string, string>();
  const once = (key: string, what: string): void => {
    const before = seen.get(key);
    if (before !== undefined) fail(`${what} appears twice (${before})`);
    seen.set(key, what);
  };
  for (const n of all) {
    const name = n.kind === 'meta' ? `meta node ${n.id}` : `kv node ${n.id} of group ${n.group}`;
    once(`node ${n.group}/${n.id}`, name);
    once(`address ${n.address}`, `address ${n.address}`);
    once(`dir ${n.dataDir}`, `data-dir ${n.dataDir}`);
  }
  for (const a of all) {
    for (const b of all) {
      if (a !== b && b.dataDir.startsWith(`${a.dataDir}/`))
        fail(`data-dir ${b.dataDir} is inside data-dir ${a.dataDir}`);
    }
  }
  return { clusterId, meta, kv };
}

/** The kv groups of a layout, each with its nodes by id. */
export function layoutGroups(layout: RestoreLayout): Map<number, LayoutNode[]> {
  const groups = new Map<number, LayoutNode[]>();
  for (const n of layout.kv) groups.set(n.group, [...(groups.get(n.group) ?? []), n]);
  return groups;
}
