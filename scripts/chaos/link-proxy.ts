// A TCP proxy for one directed peer link (node a dialing node b). The chaos suite puts one in
// front of every link and turns them into partitions: `blackhole` stops moving bytes in both
// directions but keeps connections open and loses nothing (requests hang until their deadline;
// once healed, what was held back arrives late, as TCP would deliver it after a partition),
// `drop` refuses and resets connections, `delay` holds every chunk back, `pass` forwards. Modes
// apply to connections already open, not only to new ones. Bytes are never silently discarded:
// that would corrupt the HTTP/2 stream, which no real network does.
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export type LinkMode =
  | { readonly kind: 'pass' }
  | { readonly kind: 'blackhole' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'delay'; readonly ms: number };

export const pass: LinkMode = { kind: 'pass' };

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
}

export class LinkProxy {
  private mode: LinkMode = pass;
  private readonly pairs = new Set<Pair>();
  private server: Server | null = null;
  private listenPort = 0;
  /** Bytes forwarded (both directions) and swallowed, for the report. */
  readonly stats = { forwarded: 0, held: 0, refused: 0 };
  private flowWaiters: (() => void)[] = [];

  /** Resolves once the link is no longer a blackhole. */
  private untilFlowing(): Promise<void> {
    if (this.mode.kind !== 'blackhole') return Promise.resolve();
    return new Promise((resolve) => this.flowWaiters.push(resolve));
  }

  constructor(
    /** For messages: "kv-1-1 -> kv-1-2". */
    readonly name: string,
    private readonly target: { host: string; port: number },
  ) {}

  /** Listens on `port` (0: any free port) of 127.0.0.1; returns the port. */
  async listen(port: number): Promise<number> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.listenPort = (server.address() as AddressInfo).port;
    return this.listenPort;
  }

  get port(): number {
    return this.listenPort;
  }

  get address(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  currentMode(): LinkMode {
    return this.mode;
  }

  setMode(mode: LinkMode): void {
    this.mode = mode;
    if (mode.kind !== 'blackhole') for (const wake of this.flowWaiters.splice(0)) wake();
    for (const pair of this.pairs) {
      if (mode.kind === 'drop') {
        pair.client.destroy();
        pair.upstream.destroy();
      } else if (mode.kind === 'blackhole') {
        // Stop reading: the bytes wait in the sockets, the senders see no progress.
        pair.client.pause();
        pair.upstream.pause();
      } else {
        pair.client.resume();
        pair.upstream.resume();
      }
    }
  }

  private accept(client: Socket): void {
    client.setNoDelay(true);
    if (this.mode.kind === 'drop') {
      this.stats.refused++;
      client.destroy();
      return;
    }
    const upstream = connect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    const close = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    this.forward(client, upstream);
    this.forward(upstream, client);
    if (this.mode.kind === 'blackhole') {
      client.pause();
      upstream.pause();
    }
  }

  /** Copies `from` to `to` through the current mode, keeping the order of chunks. */
  private forward(from: Socket, to: Socket): void {
    let queue = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      const mode = this.mode;
      switch (mode.kind) {
        case 'pass':
          this.stats.forwarded += chunk.length;
          queue = queue.then(() => {
            if (!to.destroyed) to.write(chunk);
          });
          return;
        case 'blackhole':
          // Read before the pause took effect: hold it until the link heals.
          this.stats.held += chunk.length;
          queue = queue
            .then(() => this.untilFlowing())
            .then(() => {
              if (!to.destroyed) to.write(chunk);
            });
          return;
        case 'drop':
          // The connection is being reset: nothing more goes through it.
          return;
        case 'delay': {
          // Each chunk is due `ms` after it arrived; order is kept, delays do not add up.
          this.stats.forwarded += chunk.length;
          const due = Date.now() + mode.ms;
          queue = queue.then(
            () =>
              new Promise<void>((resolve) =>
                setTimeout(
                  () => {
                    if (!to.destroyed) to.write(chunk);
                    resolve();
                  },
                  Math.max(0, due - Date.now()),
                ),
              ),
          );
          return;
        }
      }
    });
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
