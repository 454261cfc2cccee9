// The cluster the chaos suite runs: a meta group of 3, kv group 1 of 3 (plus spare kv nodes that
// membership changes add later) and kv groups 2, 3, ... of 3 each (between which slots move),
// every process real, and every peer link inside a group (a dialing b) routed through its own
// LinkProxy (--peer-route), so that partitions can be cut per link and per direction. Clients,
// and kv leaders copying a moving slot from another group, talk to the nodes directly.
import { freePorts, LocalCluster, nodeSpec, type NodeSpec } from '../local-cluster';
import { LinkProxy, pass, type LinkMode } from './link-proxy';

export interface ChaosClusterOptions {
  readonly dataDir: string;
  /** kv nodes of group 1 that start empty and wait to be added (ids 4, 5, ...). */
  readonly spareKvNodes: number;
  /** kv groups (at least 1): group 1 and groups 2.. of three nodes each. */
  readonly kvGroups: number;
  /** Flags for every process (timing, snapshot frequency). */
  readonly extraArgs: readonly string[];
  /** More flags for the meta nodes only. */
  readonly metaArgs?: readonly string[];
  /** Flags of one node by name (its TLS certificate), after the others. */
  readonly nodeArgs?: (name: string) => readonly string[];
}

export class ChaosCluster {
  private constructor(
    readonly local: LocalCluster,
    readonly metaNodes: readonly NodeSpec[],
    /** Every kv node of group 1: the first three, then the spares. */
    readonly kvNodes: readonly NodeSpec[],
    /** The three nodes of each kv group after group 1, by group id. */
    readonly otherGroups: ReadonlyMap<number, readonly NodeSpec[]>,
    private readonly proxies: ReadonlyMap<string, LinkProxy>,
  ) {}

  /** The kv group ids, ascending. */
  kvGroupIds(): number[] {
    return [1, ...this.otherGroups.keys()];
  }

  /** Every node of every kv group (group 1's spares included). */
  allKvNodes(): NodeSpec[] {
    return [...this.kvNodes, ...[...this.otherGroups.values()].flat()];
  }

  static async create(o: ChaosClusterOptions): Promise<ChaosCluster> {
    const metaIds = [1, 2, 3];
    if (!Number.isSafeInteger(o.kvGroups) || o.kvGroups < 1)
      throw new RangeError(`kvGroups must be at least 1, not ${o.kvGroups}`);
    const kvIds = Array.from({ length: 3 + o.spareKvNodes }, (_, i) => i + 1);
    const otherIds = [1, 2, 3];
    const otherGroupIds = Array.from({ length: o.kvGroups - 1 }, (_, i) => i + 2);
    const proxyCount =
      metaIds.length * (metaIds.length - 1) +
      kvIds.length * (kvIds.length - 1) +
      otherGroupIds.length * otherIds.length * (otherIds.length - 1);
    const ports = await freePorts(
      2 * (metaIds.length + kvIds.length + otherGroupIds.length * otherIds.length) + proxyCount,
    );
    let next = 0;
    const take = (): number => ports[next++];
    const metaGrpc = new Map(metaIds.map((id) => [id, `127.0.0.1:${take()}`]));
    const kvGrpc = new Map(kvIds.map((id) => [id, `127.0.0.1:${take()}`]));
    const proxies = new Map<string, LinkProxy>();
    const linkKey = (group: number, from: number, to: number): string => `${group}:${from}->${to}`;
    const createProxies = async (
      group: number,
      ids: number[],
      grpc: Map<number, string>,
    ): Promise<void> => {
      for (const from of ids) {
        for (const to of ids) {
          if (from === to) continue;
          const [host, port] = grpc.get(to)!.split(':');
          const proxy = new LinkProxy(`${group === 0 ? 'meta' : `kv-${group}`}-${from} -> ${to}`, {
            host,
            port: Number(port),
          });
          await proxy.listen(take());
          proxies.set(linkKey(group, from, to), proxy);
        }
      }
    };
    await createProxies(0, metaIds, metaGrpc);
    await createProxies(1, kvIds, kvGrpc);
    const otherGrpc = new Map(
      otherGroupIds.map((g) => [g, new Map(otherIds.map((id) => [id, `127.0.0.1:${take()}`]))]),
    );
    for (const [g, grpc] of otherGrpc) await createProxies(g, otherIds, grpc);
    const routes = (group: number, from: number, ids: number[]): string =>
      ids
        .filter((to) => to !== from)
        .map((to) => `${to}=${proxies.get(linkKey(group, from, to))!.address}`)
        .join(',');
    const metaPeers = metaIds.map((id) => `${id}=${metaGrpc.get(id)}`).join(',');
    const metaNodes = metaIds.map((id) =>
      nodeSpec({
        kind: 'meta',
        group: 0,
        id,
        grpcAddress: metaGrpc.get(id)!,
        metricsAddress: `127.0.0.1:${take()}`,
        dataRoot: o.dataDir,
        peers: metaPeers,
        peerRoute: routes(0, id, metaIds),
        extraArgs: [...o.extraArgs, ...(o.metaArgs ?? []), ...(o.nodeArgs?.(`meta-${id}`) ?? [])],
      }),
    );
    const kvPeers = [1, 2, 3].map((id) => `${id}=${kvGrpc.get(id)}`).join(',');
    const kvNodes = kvIds.map((id) =>
      nodeSpec({
        kind: 'kv',
        group: 1,
        id,
        grpcAddress: kvGrpc.get(id)!,
        metricsAddress: `127.0.0.1:${take()}`,
        dataRoot: o.dataDir,
        peers: id <= 3 ? kvPeers : '',
        meta: [...metaGrpc.values()],
        peerRoute: routes(1, id, kvIds),
        extraArgs: [...o.extraArgs, ...(o.nodeArgs?.(`kv-1-${id}`) ?? [])],
      }),
    );
    const otherGroups = new Map(
      [...otherGrpc].map(([g, grpc]) => {
        const peers = otherIds.map((id) => `${id}=${grpc.get(id)}`).join(',');
        const nodes = otherIds.map((id) =>
          nodeSpec({
            kind: 'kv',
            group: g,
            id,
            grpcAddress: grpc.get(id)!,
            metricsAddress: `127.0.0.1:${take()}`,
            dataRoot: o.dataDir,
            peers,
            meta: [...metaGrpc.values()],
            peerRoute: routes(g, id, otherIds),
            extraArgs: [...o.extraArgs, ...(o.nodeArgs?.(`kv-${g}-${id}`) ?? [])],
          }),
        );
        return [g, nodes] as const;
      }),
    );
    const local = new LocalCluster({
      dataDir: o.dataDir,
      meta: metaNodes,
      kv: new Map([[1, kvNodes.slice(0, 3)], ...otherGroups]),
    });
    for (const spare of kvNodes.slice(3)) local.addNode(spare);
    return new ChaosCluster(local, metaNodes, kvNodes, otherGroups, proxies);
  }

  /** The proxy of the link on which `from` dials `to` (same group). */
  link(from: NodeSpec, to: NodeSpec): LinkProxy | undefined {
    if (from.group !== to.group) return undefined;
    return this.proxies.get(`${from.group}:${from.id}->${to.id}`);
  }

  /** Sets the mode of every link from a node in `from` to a node in `to`. */
  cut(from: readonly NodeSpec[], to: readonly NodeSpec[], mode: LinkMode): void {
    for (const a of from) for (const b of to) if (a !== b) this.link(a, b)?.setMode(mode);
  }

  /** Every link back to `pass`. */
  healLinks(): void {
    for (const proxy of this.proxies.values()) proxy.setMode(pass);
  }

  /** Links not in pass mode, for the progress line and the report. */
  describeFaultyLinks(): string[] {
    return [...this.proxies.values()]
      .filter((p) => p.currentMode().kind !== 'pass')
      .map((p) => `${p.name}: ${p.currentMode().kind}`);
  }

  async close(): Promise<void> {
    for (const proxy of this.proxies.values()) await proxy.close();
  }
}
