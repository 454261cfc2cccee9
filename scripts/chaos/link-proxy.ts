// A TCP proxy for one directed peer link (node a dialing node b). The chaos suite puts one in
// front of every link and turns them into partitions: `blackhole` swallows bytes in both
// directions and keeps connections open (requests hang until their deadline, as behind a real
// partition), `drop` refuses and resets connections, `delay` holds every chunk back, `pass`
// forwards. Modes apply to connections already open, not only to new ones.
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
  readonly stats = { forwarded: 0, swallowed: 0, refused: 0 };

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
    if (mode.kind === 'drop') {
      for (const pair of this.pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
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
        case 'drop':
          this.stats.swallowed += chunk.length;
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
