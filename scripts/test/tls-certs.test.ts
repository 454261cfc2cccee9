// tls-certs makes a local CA and certificates with openssl; checked here with node:crypto and a
// real mutual-TLS connection on 127.0.0.1.
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { createLocalTls, memberUri, type LocalTls, type TlsNode } from '../tls-certs';

const nodes: readonly TlsNode[] = [
  { name: 'meta-1', group: 0, id: 1 },
  { name: 'kv-1-2', group: 1, id: 2 },
];

let dir = '';
let tls: LocalTls;

async function certOf(file: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(file));
}

function filesOf(map: LocalTls['nodes'], name: string): { certFile: string; keyFile: string } {
  const files = map.get(name);
  if (!files) throw new Error(`no certificate for ${name}`);
  return files;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eraftkv-tls-'));
  tls = await createLocalTls(join(dir, 'certs'), nodes, ['admin']);
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('tls-certs', () => {
  it('names a member by group and id', () => {
    expect(memberUri(0, 1)).toBe('urn:eraftkv:group:0:node:1');
    expect(memberUri(1, 2)).toBe('urn:eraftkv:group:1:node:2');
  });

  it('makes a CA, and node certificates it issued for 127.0.0.1, localhost and the member', async () => {
    expect(tls.caFile).toBe(join(dir, 'certs', 'ca.crt'));
    const ca = await certOf(tls.caFile);
    expect(ca.ca).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(ca.publicKey.asymmetricKeyType).toBe('ec');
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');

    for (const node of nodes) {
      const files = filesOf(tls.nodes, node.name);
      expect(files.certFile).toBe(join(tls.dir, `${node.name}.crt`));
      expect(files.keyFile).toBe(join(tls.dir, `${node.name}.key`));
      const cert = await certOf(files.certFile);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.checkIssued(ca)).toBe(true);
      expect(cert.ca).toBe(false);
      expect(cert.subject).toBe(`CN=${node.name}`);
      expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
      expect(cert.subjectAltName).toContain('DNS:localhost');
      expect(cert.subjectAltName).toContain(`URI:${memberUri(node.group, node.id)}`);
      expect(cert.checkHost('localhost')).toBe('localhost');
      expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
      expect(cert.keyUsage).toEqual(
        expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']),
      );
    }
    const kv = await certOf(filesOf(tls.nodes, 'kv-1-2').certFile);
    expect(kv.subjectAltName).toContain('URI:urn:eraftkv:group:1:node:2');
  });

  it('makes a client certificate with the user as its CN and no member URI', async () => {
    const ca = await certOf(tls.caFile);
    const files = filesOf(tls.clients, 'admin');
    expect(files.certFile).toBe(join(tls.dir, 'client-admin.crt'));
    expect(files.keyFile).toBe(join(tls.dir, 'client-admin.key'));
    const cert = await certOf(files.certFile);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.subject).toBe('CN=admin');
    expect(cert.subjectAltName ?? '').not.toContain('URI:');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
  });

  it('keeps private keys to their owner and leaves no temporary files', async () => {
    const keys = [
      join(tls.dir, 'ca.key'),
      ...[...tls.nodes.values(), ...tls.clients.values()].map((files) => files.keyFile),
    ];
    for (const key of keys) expect((await stat(key)).mode & 0o777).toBe(0o600);
    expect((await readdir(tls.dir)).sort()).toEqual(
      [
        'ca.crt',
        'ca.key',
        'client-admin.crt',
        'client-admin.key',
        'kv-1-2.crt',
        'kv-1-2.key',
        'meta-1.crt',
        'meta-1.key',
      ].sort(),
    );
  });

  it('reuses the CA and the certificates on a second call, and adds what is new', async () => {
    const before = await Promise.all(
      [
        tls.caFile,
        filesOf(tls.nodes, 'kv-1-2').certFile,
        filesOf(tls.clients, 'admin').certFile,
      ].map(async (file) => (await certOf(file)).fingerprint256),
    );
    const again = await createLocalTls(
      tls.dir,
      [...nodes, { name: 'kv-1-3', group: 1, id: 3 }],
      ['admin'],
    );
    const after = await Promise.all(
      [
        again.caFile,
        filesOf(again.nodes, 'kv-1-2').certFile,
        filesOf(again.clients, 'admin').certFile,
      ].map(async (file) => (await certOf(file)).fingerprint256),
    );
    expect(after).toEqual(before);
    const added = await certOf(filesOf(again.nodes, 'kv-1-3').certFile);
    expect(added.checkIssued(await certOf(again.caFile))).toBe(true);
  });

  it('refuses names that cannot be file names', async () => {
    await expect(createLocalTls(tls.dir, [], ['../evil'])).rejects.toThrow(/user name/);
  });

  it('makes every certificate again when it has to make a new CA', async () => {
    const other = join(dir, 'renewed');
    const first = await createLocalTls(other, nodes, ['admin']);
    const metaBefore = (await certOf(filesOf(first.nodes, 'meta-1').certFile)).fingerprint256;
    await rm(join(other, 'ca.key'));
    const second = await createLocalTls(other, nodes, ['admin']);
    const ca = await certOf(second.caFile);
    const meta = await certOf(filesOf(second.nodes, 'meta-1').certFile);
    expect(meta.fingerprint256).not.toBe(metaBefore);
    expect(meta.verify(ca.publicKey)).toBe(true);
    const admin = await certOf(filesOf(second.clients, 'admin').certFile);
    expect(admin.verify(ca.publicKey)).toBe(true);
  });

  it('says which file it could not make, with what openssl said', async () => {
    const broken = join(dir, 'broken');
    await mkdir(join(broken, 'meta-1.crt'), { recursive: true });
    const failure = await createLocalTls(broken, nodes.slice(0, 1), []).then(
      () => new Error('no error'),
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    const prefix = `cannot create ${join(broken, 'meta-1.crt')}: openssl x509 failed: `;
    expect(failure.message.startsWith(prefix)).toBe(true);
    expect(failure.message.slice(prefix.length)).toMatch(/meta-1\.crt/);
    expect((await readdir(broken)).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('serves mutual TLS: a node certificate on the server, a user certificate on the client', async () => {
    const ca = await readFile(tls.caFile);
    const node = filesOf(tls.nodes, 'kv-1-2');
    const user = filesOf(tls.clients, 'admin');
    const server = createServer({
      cert: await readFile(node.certFile),
      key: await readFile(node.keyFile),
      ca,
      requestCert: true,
      rejectUnauthorized: true,
    });
    const accepted = new Promise<{ authorized: boolean; peer: string | string[] | undefined }>(
      (resolve) => {
        server.once('secureConnection', (socket: TLSSocket) => {
          resolve({ authorized: socket.authorized, peer: socket.getPeerCertificate().subject?.CN });
          socket.end();
        });
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const client = connect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca,
        cert: await readFile(user.certFile),
        key: await readFile(user.keyFile),
      });
      try {
        await once(client, 'secureConnect');
        expect(client.authorized).toBe(true);
        expect(client.getPeerCertificate().subject?.CN).toBe('kv-1-2');
        expect(await accepted).toEqual({ authorized: true, peer: 'admin' });
      } finally {
        client.destroy();
      }
    } finally {
      server.close();
      await once(server, 'close');
    }
  });
});
