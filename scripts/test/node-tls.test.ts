// NodeTls (server-kit) on certificates made by scripts/tls-certs.ts: which flag combinations it
// takes, how it names the flag and file at fault, that a file which stops parsing leaves the last
// good one in use, and how it tells a member's peer certificate from anyone else's.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { NodeTls, type NodeTlsFlags } from '@eraftkv/server-kit';
import type { Logger, PeerCall } from '@eraftkv/raft-server';
import { createLocalTls, type LocalTls } from '../tls-certs';

const said = { warnings: [] as string[], infos: [] as string[] };
const quiet: Logger = {
  debug: () => {},
  info: (message: string) => {
    said.infos.push(message);
  },
  warn: (message: string) => {
    said.warnings.push(message);
  },
  error: () => {},
  child: () => quiet,
};

/** A call as grpc-js hands it over, presenting the certificate in `pem` (or none). */
async function callFrom(pem: string | null): Promise<PeerCall> {
  if (pem === null) return { getAuthContext: () => ({}) };
  const raw = new X509Certificate(await readFile(pem)).raw;
  return {
    getAuthContext: () => ({
      transportSecurityType: 'ssl',
      sslPeerCertificate: { raw } as PeerCertificate,
    }),
  };
}

describe('NodeTls', () => {
  let dir: string;
  let tls: LocalTls;
  let other: LocalTls;
  const opened: NodeTls[] = [];

  const flags = (over: Partial<NodeTlsFlags> = {}): NodeTlsFlags => {
    const own = tls.nodes.get('kv-1-1')!;
    return {
      certFile: own.certFile,
      keyFile: own.keyFile,
      trustedCaFile: tls.caFile,
      clientCertAuth: true,
      peerCertFile: own.certFile,
      peerKeyFile: own.keyFile,
      peerTrustedCaFile: tls.caFile,
      reloadMs: 100,
      ...over,
    };
  };
  const open = (f: NodeTlsFlags): NodeTls | null => {
    const t = NodeTls.fromFlags(f, quiet);
    if (t !== null) opened.push(t);
    return t;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-node-tls-'));
    const nodes = [
      { name: 'kv-1-1', group: 1, id: 1 },
      { name: 'kv-1-2', group: 1, id: 2 },
      { name: 'meta-1', group: 0, id: 1 },
    ];
    tls = await createLocalTls(join(dir, 'a'), nodes, ['admin']);
    other = await createLocalTls(join(dir, 'b'), nodes, []);
  });
  afterAll(async () => {
    for (const t of opened) t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is off without TLS flags, and refuses flags that do not fit together, naming them', () => {
    const none: NodeTlsFlags = {
      certFile: '',
      keyFile: '',
      trustedCaFile: '',
      clientCertAuth: false,
      peerCertFile: '',
      peerKeyFile: '',
      peerTrustedCaFile: '',
      reloadMs: 5000,
    };
    expect(open(none)).toBeNull();
    expect(() => open({ ...none, clientCertAuth: true })).toThrow(/--cert-file and --key-file/);
    expect(() => open(flags({ trustedCaFile: '', clientCertAuth: true }))).toThrow(
      /--client-cert-auth needs --trusted-ca-file/,
    );
    expect(() => open(flags({ peerKeyFile: '' }))).toThrow(/--peer-key-file/);
    expect(() =>
      open(
        flags({
          trustedCaFile: '',
          clientCertAuth: false,
          peerCertFile: '',
          peerKeyFile: '',
          peerTrustedCaFile: '',
        }),
      ),
    ).toThrow(/--trusted-ca-file or --peer-trusted-ca-file is needed/);
    expect(() => open(flags({ reloadMs: 10 }))).toThrow(/--tls-reload-ms/);
  });

  it('names the flag and the file that does not read or does not fit', async () => {
    expect(() => open(flags({ certFile: join(dir, 'missing.crt') }))).toThrow(
      /--cert-file .*missing\.crt cannot be read/,
    );
    const garbage = join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate');
    expect(() => open(flags({ trustedCaFile: garbage }))).toThrow(
      /--trusted-ca-file .*garbage\.pem holds no PEM certificate/,
    );
    // The key of another certificate.
    expect(() => open(flags({ keyFile: tls.nodes.get('kv-1-2')!.keyFile }))).toThrow(
      /--key-file .* is not the key of the certificate/,
    );
  });

  it('takes a peer RPC only from the certificate of the member it claims to come from', async () => {
    const t = open(flags())!;
    const own = await callFrom(tls.nodes.get('kv-1-2')!.certFile);
    expect(t.authenticatePeer(own, 1, 2)).toBeNull();
    expect(t.authenticatePeer(own, 1, 3)).toMatchObject({ kind: 'permission-denied' });
    expect(t.authenticatePeer(own, 0, 2)).toMatchObject({ kind: 'permission-denied' });
    expect(
      t.authenticatePeer(await callFrom(tls.clients.get('admin')!.certFile), 1, 2),
    ).toMatchObject({
      kind: 'permission-denied',
    });
    expect(t.authenticatePeer(await callFrom(null), 1, 2)).toMatchObject({
      kind: 'unauthenticated',
    });
    // The same names under another CA.
    expect(
      t.authenticatePeer(await callFrom(other.nodes.get('kv-1-2')!.certFile), 1, 2),
    ).toMatchObject({
      kind: 'unauthenticated',
    });
    // A certificate naming a member but signed by the client CA, when that is another CA than
    // the peer CA: clients' CA may not mint members.
    const split = open(flags({ trustedCaFile: other.caFile }))!;
    const minted = await callFrom(other.nodes.get('kv-1-2')!.certFile);
    expect(split.authenticatePeer(minted, 1, 2)).toMatchObject({ kind: 'unauthenticated' });
    expect(split.authenticatePeer(own, 1, 2)).toBeNull();
    // Members of a group: the meta group's nodes for hand-overs, anyone's for exports.
    const meta = await callFrom(tls.nodes.get('meta-1')!.certFile);
    expect(t.authenticateMember(meta, 0)).toBeNull();
    expect(t.authenticateMember(own, 0)).toMatchObject({ kind: 'permission-denied' });
    expect(t.authenticateMember(own, null)).toBeNull();
    // Without peer TLS, peers are not checked (and the node says so in its log).
    const plain = open(flags({ peerCertFile: '', peerKeyFile: '', peerTrustedCaFile: '' }))!;
    expect(plain.authenticatePeer(await callFrom(null), 1, 2)).toBeNull();
    expect(said.warnings.some((w) => /not authenticated/.test(w))).toBe(true);
  });

  it('keeps the last good files when one stops parsing, and takes the next good ones', async () => {
    const copy = join(dir, 'rotating');
    const fresh = await createLocalTls(copy, [{ name: 'kv-1-1', group: 1, id: 1 }], []);
    const files = fresh.nodes.get('kv-1-1')!;
    const t = open(
      flags({
        certFile: files.certFile,
        keyFile: files.keyFile,
        peerCertFile: '',
        peerKeyFile: '',
        peerTrustedCaFile: '',
      }),
    )!;
    said.warnings.length = 0;
    said.infos.length = 0;
    await writeFile(files.certFile, 'broken');
    t.reload();
    expect(said.warnings.some((w) => /last good one stays in use/.test(w))).toBe(true);
    expect(said.infos).toEqual([]);
    // A good pair again (another certificate and its key): taken, and said.
    const next = other.nodes.get('kv-1-1')!;
    await writeFile(files.keyFile, await readFile(next.keyFile));
    await writeFile(files.certFile, await readFile(next.certFile));
    t.reload();
    expect(said.infos.some((i) => /TLS files changed/.test(i))).toBe(true);
    // Read again with nothing changed: nothing to say.
    said.infos.length = 0;
    t.reload();
    expect(said.infos).toEqual([]);
  });

  it('reads the certificate of a call once (the messages of a stream share it), and again after a CA reload', async () => {
    // A node whose peer CA file can be replaced, and a call (one stream) from member 2.
    const caFile = join(dir, 'peer-ca.crt');
    await writeFile(caFile, await readFile(tls.caFile));
    const t = open(flags({ peerTrustedCaFile: caFile }))!;
    const presented = await callFrom(tls.nodes.get('kv-1-2')!.certFile);
    let reads = 0;
    const stream: PeerCall = {
      getAuthContext: () => {
        reads++;
        return presented.getAuthContext();
      },
    };
    for (let i = 0; i < 5; i++) expect(t.authenticatePeer(stream, 1, 2)).toBeNull();
    expect(t.authenticatePeer(stream, 1, 1)).toMatchObject({ kind: 'permission-denied' });
    expect(reads).toBe(1);
    // The peer CA is replaced by one that did not sign it: the same stream is refused from now on.
    await writeFile(caFile, await readFile(other.caFile));
    t.reload();
    expect(t.authenticatePeer(stream, 1, 2)).toMatchObject({
      kind: 'unauthenticated',
      message: expect.stringMatching(/not signed by a --peer-trusted-ca-file CA/) as unknown,
    });
    expect(reads).toBe(2);
  });
});
