// A local certificate authority and the certificates of a local cluster, made with the `openssl`
// command: one CA, a certificate per node (its server certificate, and its client certificate
// when it dials peers) and a client certificate per user. Used by the local quick start
// (`npm start -- --tls`) and the tests.
//
// Everything is written into one directory and kept there: a second run reuses the CA and every
// certificate that is still good (issued by that CA, matching its key and its names, not
// expired), so clients keep trusting a cluster that is started again.
import type { ClientTls } from '@eraftkv/client';
import { memberUri } from '@eraftkv/server-kit';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface TlsNode {
  readonly name: string;
  readonly group: number;
  readonly id: number;
}

export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface LocalTls {
  readonly dir: string;
  /** <dir>/ca.crt */
  readonly caFile: string;
  /** By node name: <dir>/<name>.crt and .key. */
  readonly nodes: ReadonlyMap<string, CertFiles>;
  /** By user name: <dir>/client-<user>.crt and .key. */
  readonly clients: ReadonlyMap<string, CertFiles>;
}

/** The URI SAN that names a cluster member (the servers check peers by it): group 0 is meta. */
export { memberUri };

const caSubject = '/CN=eraftkv local CA';
const caDays = 3650;
const leafDays = 730;

/** What a certificate should say, besides being issued by the CA. */
interface LeafSpec {
  readonly commonName: string;
  readonly files: CertFiles;
  /** openssl's subjectAltName value, or undefined for none. */
  readonly altNames: string | undefined;
  readonly extendedKeyUsage: string;
}

/**
 * Creates (or reuses) the CA in `dir` and a certificate for every node and user. Node and user
 * names become file names and common names, so they are limited to letters, digits, '.', '_' and
 * '-'.
 */
export async function createLocalTls(
  dir: string,
  nodes: readonly TlsNode[],
  users: readonly string[],
): Promise<LocalTls> {
  for (const node of nodes) {
    checkName(node.name, 'node');
    if (!isIndex(node.group) || !isIndex(node.id)) {
      throw new Error(`node ${node.name}: group and id must be non-negative integers`);
    }
  }
  for (const user of users) checkName(user, 'user');
  checkUnique(
    nodes.map((node) => node.name),
    'node',
  );
  checkUnique(users, 'user');

  await mkdir(dir, { recursive: true });
  const caFile = join(dir, 'ca.crt');
  const caKeyFile = join(dir, 'ca.key');
  const ca = await ensureCa(dir, caFile, caKeyFile);

  const nodeFiles = new Map<string, CertFiles>();
  for (const node of nodes) {
    const files = filesOf(dir, node.name);
    await ensureLeaf(dir, ca, caFile, caKeyFile, {
      commonName: node.name,
      files,
      altNames: `IP:127.0.0.1, DNS:localhost, URI:${memberUri(node.group, node.id)}`,
      extendedKeyUsage: 'serverAuth, clientAuth',
    });
    nodeFiles.set(node.name, files);
  }
  const clientFiles = new Map<string, CertFiles>();
  for (const user of users) {
    const files = filesOf(dir, `client-${user}`);
    await ensureLeaf(dir, ca, caFile, caKeyFile, {
      commonName: user,
      files,
      altNames: undefined,
      extendedKeyUsage: 'clientAuth',
    });
    clientFiles.set(user, files);
  }
  return { dir, caFile, nodes: nodeFiles, clients: clientFiles };
}

function filesOf(dir: string, base: string): CertFiles {
  return { certFile: join(dir, `${base}.crt`), keyFile: join(dir, `${base}.key`) };
}

function isIndex(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function checkName(name: string, what: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new Error(
      `${what} name ${JSON.stringify(name)} must be 1-64 letters, digits, '.', '_' or '-' ` +
        `and start with a letter or digit`,
    );
  }
}

function checkUnique(names: readonly string[], what: string): void {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new Error(`${what} name ${name} is given twice`);
    seen.add(name);
  }
}

/** The CA certificate in `caFile`, created (with its key) unless a good one is already there. */
async function ensureCa(dir: string, caFile: string, caKeyFile: string): Promise<X509Certificate> {
  const existing = await readPair({ certFile: caFile, keyFile: caKeyFile });
  if (
    existing &&
    existing.cert.ca &&
    existing.cert.checkIssued(existing.cert) &&
    existing.cert.verify(existing.cert.publicKey) &&
    existing.keyMatches &&
    !expired(existing.cert)
  ) {
    return existing.cert;
  }
  await newKey(caKeyFile);
  const extensions = [
    'basicConstraints = critical, CA:TRUE',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid:always',
  ];
  await withTempFiles(dir, 'ca', async (extFile, csrFile) => {
    await writeFile(extFile, extensions.join('\n') + '\n');
    await openssl(caFile, ['req', '-new', '-key', caKeyFile, '-subj', caSubject, '-out', csrFile]);
    await openssl(caFile, [
      'x509',
      '-req',
      '-in',
      csrFile,
      '-signkey',
      caKeyFile,
      '-sha256',
      '-days',
      String(caDays),
      '-set_serial',
      randomSerial(),
      '-extfile',
      extFile,
      '-out',
      caFile,
    ]);
  });
  return new X509Certificate(await readFile(caFile));
}

/** Makes the certificate of `spec` unless a good one is already there. */
async function ensureLeaf(
  dir: string,
  ca: X509Certificate,
  caFile: string,
  caKeyFile: string,
  spec: LeafSpec,
): Promise<void> {
  const { certFile, keyFile } = spec.files;
  const existing = await readPair(spec.files);
  if (
    existing &&
    existing.cert.checkIssued(ca) &&
    existing.cert.verify(ca.publicKey) &&
    existing.keyMatches &&
    !expired(existing.cert) &&
    existing.cert.subject === `CN=${spec.commonName}` &&
    sameAltNames(existing.cert.subjectAltName, spec.altNames)
  ) {
    return;
  }
  await newKey(keyFile);
  const extensions = [
    'basicConstraints = CA:FALSE',
    'keyUsage = critical, digitalSignature',
    `extendedKeyUsage = ${spec.extendedKeyUsage}`,
    ...(spec.altNames === undefined ? [] : [`subjectAltName = ${spec.altNames}`]),
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid:always',
  ];
  await withTempFiles(dir, spec.commonName, async (extFile, csrFile) => {
    await writeFile(extFile, extensions.join('\n') + '\n');
    await openssl(certFile, [
      'req',
      '-new',
      '-key',
      keyFile,
      '-subj',
      `/CN=${spec.commonName}`,
      '-out',
      csrFile,
    ]);
    await openssl(certFile, [
      'x509',
      '-req',
      '-in',
      csrFile,
      '-CA',
      caFile,
      '-CAkey',
      caKeyFile,
      '-sha256',
      '-days',
      String(leafDays),
      '-set_serial',
      randomSerial(),
      '-extfile',
      extFile,
      '-out',
      certFile,
    ]);
  });
}

/** The certificate and key in `files` if both exist and parse, and whether they belong together. */
async function readPair(
  files: CertFiles,
): Promise<{ cert: X509Certificate; keyMatches: boolean } | undefined> {
  try {
    const cert = new X509Certificate(await readFile(files.certFile));
    const key = createPrivateKey(await readFile(files.keyFile));
    return { cert, keyMatches: cert.checkPrivateKey(key) };
  } catch {
    return undefined;
  }
}

function expired(cert: X509Certificate): boolean {
  return !(Date.parse(cert.validTo) > Date.now());
}

/** Compares node's rendering of a certificate's SAN (`IP Address:...`) with openssl's (`IP:...`). */
function sameAltNames(actual: string | undefined, expected: string | undefined): boolean {
  if (expected === undefined) return actual === undefined;
  return actual === expected.replace(/\bIP:/g, 'IP Address:');
}

/** A new EC P-256 private key in `keyFile`, readable by its owner only. */
async function newKey(keyFile: string): Promise<void> {
  await rm(keyFile, { force: true });
  await openssl(keyFile, [
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-out',
    keyFile,
  ]);
  await chmod(keyFile, 0o600);
}

/** A random positive 127-bit serial number, in openssl's hex notation. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return `0x${bytes.toString('hex')}`;
}

/** Runs `use` with the names of an extension file and a CSR file in `dir`, then removes them. */
async function withTempFiles(
  dir: string,
  base: string,
  use: (extFile: string, csrFile: string) => Promise<void>,
): Promise<void> {
  const prefix = join(dir, `.${base}.${randomBytes(4).toString('hex')}`);
  const extFile = `${prefix}.ext`;
  const csrFile = `${prefix}.csr`;
  try {
    await use(extFile, csrFile);
  } finally {
    await rm(extFile, { force: true });
    await rm(csrFile, { force: true });
  }
}

/** Runs openssl; a failure names the file being made and carries openssl's stderr. */
async function openssl(making: string, args: readonly string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args);
  } catch (err) {
    const stderr =
      typeof err === 'object' && err !== null && 'stderr' in err ? String(err.stderr).trim() : '';
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(
      `cannot create ${making}: openssl ${args[0] ?? ''} failed: ${stderr || message}`,
    );
  }
}

/**
 * The flags that run node `name` with mutual TLS and peer identity: its certificate on its port
 * and towards its peers, the local CA for clients and peers alike, client certificates required.
 */
export function nodeTlsArgs(tls: LocalTls, name: string): string[] {
  const own = tls.nodes.get(name);
  if (own === undefined) throw new Error(`no certificate was made for ${name}`);
  return [
    '--cert-file',
    own.certFile,
    '--key-file',
    own.keyFile,
    '--trusted-ca-file',
    tls.caFile,
    '--client-cert-auth',
    '--peer-cert-file',
    own.certFile,
    '--peer-key-file',
    own.keyFile,
    '--peer-trusted-ca-file',
    tls.caFile,
  ];
}

/** The TLS material of client `user` (for EraftKvClient's tls option). */
export async function clientTlsOf(tls: LocalTls, user: string): Promise<ClientTls> {
  const files = tls.clients.get(user);
  if (files === undefined) throw new Error(`no client certificate was made for ${user}`);
  return {
    ca: await readFile(tls.caFile),
    cert: await readFile(files.certFile),
    key: await readFile(files.keyFile),
  };
}
