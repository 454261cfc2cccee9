// The cluster the chaos suite runs: a meta group of 3 and kv group 1 of 3 (plus spare kv nodes
// that membership changes add later), every process real, and every peer link inside a group
// (a dialing b) routed through its own LinkProxy (--peer-route), so that partitions can be cut
// per link and per direction. Clients talk to the nodes directly.
import { freePorts, LocalCluster, nodeSpec, type NodeSpec } from '../local-cluster';
import { LinkProxy, pass, type LinkMode } from './link-proxy';

export interface ChaosClusterOptions {
  readonly dataDir: string;
  /** kv nodes that start empty and wait to be added (ids 4, 5, ...). */
  readonly spareKvNodes: number;
  /** Flags for every process (timing, snapshot frequency). */
  readonly extraArgs: readonly string[];
}

export class ChaosCluster {
  private constructor(
    readonly local: LocalCluster,
    readonly metaNodes: readonly NodeSpec[],
    /** Every kv node of group 1: the first three, then the spares. */
    readonly kvNodes: readonly NodeSpec[],
    private readonly proxies: ReadonlyMap<string, LinkProxy>,
  ) {}

  static async create(o: ChaosClusterOptions): Promise<ChaosCluster> {
    const metaIds = [1, 2, 3];
    const kvIds = Array.from({ length: 3 + o.spareKvNodes }, (_, i) => i + 1);
    const proxyCount = metaIds.length * (metaIds.length - 1) + kvIds.length * (kvIds.length - 1);
    const ports = await freePorts(2 * (metaIds.length + kvIds.length) + proxyCount);
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
        extraArgs: o.extraArgs,
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
        extraArgs: o.extraArgs,
      }),
    );
    const local = new LocalCluster({
      dataDir: o.dataDir,
      meta: metaNodes,
      kv: new Map([[1, kvNodes.slice(0, 3)]]),
    });
    for (const spare of kvNodes.slice(3)) local.addNode(spare);
    return new ChaosCluster(local, metaNodes, kvNodes, proxies);
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
