// TLS for a node's one gRPC port (clients and peers alike), from etcd-style flags:
//
//   --cert-file --key-file        the certificate the node presents to everyone who connects
//   --trusted-ca-file             the CA of client certificates; --client-cert-auth requires one
//   --peer-cert-file --peer-key-file
//                                 the certificate the node presents when it dials a peer (or a
//                                 node of another group); it must name the node (see memberUri)
//   --peer-trusted-ca-file        the CA of peer certificates: Raft RPCs and slot copies are
//                                 taken only from a certificate it signed that names the sender
//
// The port always asks for a client certificate once a CA is configured (so that peers can be
// told apart from clients) and requires one only with --client-cert-auth. A node configured for
// TLS serves TLS only. Every file is read again every --tls-reload-ms (and on SIGHUP, through
// reload()): a rotated certificate takes effect for new connections without a restart, and a
// file that no longer parses is logged and the last good one kept.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger, PeerAuthenticator, PeerCall } from '@eraftkv/raft-server';
import type { CallerOf } from './access';

/** The TLS flags of a node, as parsed ('' for a flag not given). */
export interface NodeTlsFlags {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustedCaFile: string;
  readonly clientCertAuth: boolean;
  readonly peerCertFile: string;
  readonly peerKeyFile: string;
  readonly peerTrustedCaFile: string;
  /** How often the files are read again (ms). */
  readonly reloadMs: number;
}

/** The URI a peer certificate carries (subjectAltName) to name member `id` of group `group`. */
export function memberUri(group: number, id: number): string {
  return `urn:eraftkv:group:${group}:node:${id}`;
}

/** What the files held at the last good read. */
interface Loaded {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | null;
  /** Each CA file's certificates, by its flag. */
  readonly caByFlag: ReadonlyMap<string, X509Certificate[]>;
}

/**
 * A grpc-js CertificateProvider over files: a certificate, its key and CA files (concatenated),
 * read at once (a bad file fails the start, naming it) and again every `reloadMs`.
 */
class FilesCertificateProvider implements grpc.experimental.CertificateProvider {
  private loaded: Loaded;
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly identityListeners =
    new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly what: string,
    private readonly files: {
      readonly cert: readonly [string, string];
      readonly key: readonly [string, string];
      readonly cas: readonly (readonly [string, string])[];
    },
    reloadMs: number,
    private readonly logger: Logger,
  ) {
    this.loaded = this.read();
    this.timer = setInterval(() => this.reload(), reloadMs);
    this.timer.unref();
  }

  /** Reads the files again; hands a change to the listeners, keeps the last good on a failure. */
  reload(): void {
    let next: Loaded;
    try {
      next = this.read();
    } catch (err) {
      this.logger.warn('a TLS file no longer reads; the last good one stays in use', {
        what: this.what,
        error: (err as Error).message,
      });
      return;
    }
    const changed =
      !next.cert.equals(this.loaded.cert) ||
      !next.key.equals(this.loaded.key) ||
      !(next.ca === null ? this.loaded.ca === null : this.loaded.ca?.equals(next.ca) === true);
    if (!changed) return;
    this.loaded = next;
    this.logger.info('TLS files changed: new connections use them', { what: this.what });
    for (const listener of this.identityListeners) listener(this.identity());
    for (const listener of this.caListeners) listener(this.caUpdate());
  }

  /** The CA certificates of the last good read (of the file of `flag` only, if given). */
  caCertificates(flag?: string): X509Certificate[] {
    if (flag !== undefined) return this.loaded.caByFlag.get(flag) ?? [];
    return [...this.loaded.caByFlag.values()].flat();
  }

  close(): void {
    clearInterval(this.timer);
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    // Later, not now: grpc-js registers its own watcher only after adding this listener, and a
    // first update it has no watcher for yet would be lost (the port would refuse everyone).
    setImmediate(() => {
      if (this.caListeners.has(listener)) listener(this.caUpdate());
    });
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(
    listener: grpc.experimental.IdentityCertificateUpdateListener,
  ): void {
    this.identityListeners.add(listener);
    setImmediate(() => {
      if (this.identityListeners.has(listener)) listener(this.identity());
    });
  }

  removeIdentityCertificateListener(
    listener: grpc.experimental.IdentityCertificateUpdateListener,
  ): void {
    this.identityListeners.delete(listener);
  }

  private identity(): grpc.experimental.IdentityCertificateUpdate {
    return { certificate: this.loaded.cert, privateKey: this.loaded.key };
  }

  private caUpdate(): grpc.experimental.CaCertificateUpdate | null {
    return this.loaded.ca === null ? null : { caCertificate: this.loaded.ca };
  }

  /** Reads and checks every file; throws naming the flag and the file at fault. */
  private read(): Loaded {
    const [certFlag, certPath] = this.files.cert;
    const [keyFlag, keyPath] = this.files.key;
    const cert = readTlsFile(certFlag, certPath);
    const key = readTlsFile(keyFlag, keyPath);
    const certs = parseCertificates(certFlag, certPath, cert);
    let privateKey;
    try {
      privateKey = createPrivateKey(key);
    } catch (err) {
      throw new Error(`${keyFlag} ${keyPath} holds no private key: ${(err as Error).message}`);
    }
    if (!certs[0].checkPrivateKey(privateKey)) {
      throw new Error(`${keyFlag} ${keyPath} is not the key of the certificate in ${certPath}`);
    }
    const caByFlag = new Map<string, X509Certificate[]>();
    const cas = this.files.cas.map(([flag, path]) => {
      const pem = readTlsFile(flag, path);
      caByFlag.set(flag, parseCertificates(flag, path, pem));
      return pem;
    });
    return { cert, key, ca: cas.length === 0 ? null : Buffer.concat(cas), caByFlag };
  }
}

function readTlsFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${flag} ${path} cannot be read: ${(err as Error).message}`);
  }
}

/** The certificates of a PEM file; throws naming the flag and file when there is none. */
function parseCertificates(flag: string, path: string, pem: Buffer): X509Certificate[] {
  let certs: X509Certificate[];
  try {
    certs = splitCertificates(pem);
  } catch (err) {
    throw new Error(
      `${flag} ${path} holds a certificate that does not parse: ${(err as Error).message}`,
    );
  }
  if (certs.length === 0) throw new Error(`${flag} ${path} holds no PEM certificate`);
  return certs;
}

function splitCertificates(pem: Buffer): X509Certificate[] {
  const blocks =
    pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ??
    [];
  return blocks.map((block) => new X509Certificate(block));
}

/** The URIs among a certificate's subjectAltName entries. */
function uriNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice('URI:'.length));
}

/** A peer certificate as a call presented it, with its verdict against the CAs of that time. */
interface PresentedPeer {
  /** The --peer-trusted-ca-file certificates it was checked against (replaced on a reload). */
  readonly cas: readonly X509Certificate[];
  readonly signed: boolean;
  readonly uris: string[];
  readonly subject: string;
  readonly validFrom: string;
  readonly validTo: string;
  readonly validFromMs: number;
  readonly validToMs: number;
}

/** Checks that a call comes from a member of a group (null: any group); null when it does. */
export type MemberAuthenticator = (
  call: PeerCall,
  group: number | null,
) => ReturnType<PeerAuthenticator>;

/** A node's TLS: its server credentials, what it dials peers with, and how it knows a peer. */
export class NodeTls {
  private constructor(
    private readonly server: FilesCertificateProvider,
    private readonly peer: FilesCertificateProvider | null,
    private readonly dial: FilesCertificateProvider,
    private readonly clientCertAuth: boolean,
  ) {}

  /**
   * The node's TLS from its flags; null when no TLS flag is given (plaintext). Throws naming the
   * flag when the flags do not fit together or a file does not read.
   */
  static fromFlags(f: NodeTlsFlags, logger: Logger): NodeTls | null {
    const server = f.certFile !== '' || f.keyFile !== '';
    const peer = f.peerCertFile !== '' || f.peerKeyFile !== '' || f.peerTrustedCaFile !== '';
    if (!server && !peer && f.trustedCaFile === '' && !f.clientCertAuth) return null;
    if (f.certFile === '' || f.keyFile === '') {
      throw new Error(
        '--cert-file and --key-file are both needed for TLS (every other TLS flag builds on them)',
      );
    }
    if (f.clientCertAuth && f.trustedCaFile === '') {
      throw new Error('--client-cert-auth needs --trusted-ca-file (the CA of client certificates)');
    }
    if (peer && (f.peerCertFile === '' || f.peerKeyFile === '' || f.peerTrustedCaFile === '')) {
      throw new Error(
        '--peer-cert-file, --peer-key-file and --peer-trusted-ca-file go together (peer TLS)',
      );
    }
    if (f.trustedCaFile === '' && f.peerTrustedCaFile === '') {
      throw new Error(
        '--trusted-ca-file or --peer-trusted-ca-file is needed with --cert-file: nodes dial each other over TLS and check the certificate they are shown against it',
      );
    }
    if (!Number.isSafeInteger(f.reloadMs) || f.reloadMs < 100) {
      throw new Error(`--tls-reload-ms must be an integer of at least 100, got ${f.reloadMs}`);
    }
    const cas: (readonly [string, string])[] = [];
    if (f.trustedCaFile !== '') cas.push(['--trusted-ca-file', f.trustedCaFile]);
    if (f.peerTrustedCaFile !== '') cas.push(['--peer-trusted-ca-file', f.peerTrustedCaFile]);
    const serverProvider = new FilesCertificateProvider(
      'server certificate',
      { cert: ['--cert-file', f.certFile], key: ['--key-file', f.keyFile], cas },
      f.reloadMs,
      logger,
    );
    let peerProvider: FilesCertificateProvider | null = null;
    if (peer) {
      peerProvider = new FilesCertificateProvider(
        'peer certificate',
        {
          cert: ['--peer-cert-file', f.peerCertFile],
          key: ['--peer-key-file', f.peerKeyFile],
          // A peer's server certificate is signed by either CA.
          cas,
        },
        f.reloadMs,
        logger,
      );
    } else {
      logger.warn(
        'TLS without --peer-cert-file: Raft RPCs are encrypted but not authenticated; any client of this port can send them',
      );
    }
    return new NodeTls(
      serverProvider,
      peerProvider,
      peerProvider ?? serverProvider,
      f.clientCertAuth,
    );
  }

  /** The credentials of the node's gRPC port. */
  serverCredentials(): grpc.ServerCredentials {
    // grpc-js takes the identity provider first and the (optional) CA provider second, whatever
    // the names in its declaration say; the same provider serves both here.
    const ca = this.server.caCertificates().length > 0 ? this.server : null;
    return grpc.experimental.createCertificateProviderServerCredentials(
      this.server,
      ca,
      this.clientCertAuth,
    );
  }

  /** What the node dials peers and other groups with (its peer certificate, if any). */
  peerCredentials(): grpc.ChannelCredentials {
    return grpc.experimental.createCertificateProviderChannelCredentials(this.dial, this.peer);
  }

  /**
   * Checks that a call comes from member `senderId` of group `groupId` of this cluster: a
   * certificate signed by a --peer-trusted-ca-file CA, valid now, naming that member. Without
   * peer TLS every call passes (plaintext or server-only TLS trusts the network).
   */
  readonly authenticatePeer: PeerAuthenticator = (call, groupId, senderId) => {
    if (this.peer === null) return null;
    return this.checkPeer(call, (uris) =>
      uris.includes(memberUri(groupId, senderId))
        ? null
        : `the peer certificate names ${uris.join(', ') || 'no member'}, not member ${senderId} of group ${groupId} (${memberUri(groupId, senderId)})`,
    );
  };

  /**
   * Checks that a call comes from a member of group `group` (null: of any group), whichever node:
   * the meta leader's hand-overs and import requests (group 0), slot copies between kv groups.
   */
  readonly authenticateMember: MemberAuthenticator = (call, group) => {
    if (this.peer === null) return null;
    const pattern =
      group === null
        ? /^urn:eraftkv:group:\d+:node:\d+$/
        : new RegExp(`^urn:eraftkv:group:${group}:node:\\d+$`);
    return this.checkPeer(call, (uris) =>
      uris.some((uri) => pattern.test(uri))
        ? null
        : `the peer certificate names ${uris.join(', ') || 'no member'}, not a member of ${group === null ? 'this cluster' : group === 0 ? 'the meta group' : `group ${group}`}`,
    );
  };

  /**
   * Who a call comes from: the user is the CN of its client certificate, which the handshake
   * verified only with --client-cert-auth (without it nobody is named); the member is found from
   * a peer certificate, when asked.
   */
  readonly callerOf: CallerOf = (call) => {
    const presented = this.clientCertAuth ? call.getAuthContext().sslPeerCertificate : undefined;
    const cn: unknown = presented?.subject?.CN;
    let member: number | null | undefined;
    return {
      user: typeof cn === 'string' && cn !== '' ? cn : null,
      memberOf: () => {
        if (member === undefined) member = this.memberGroupOf(call);
        return member;
      },
    };
  };

  private memberGroupOf(call: PeerCall): number | null {
    if (this.peer === null) return null;
    let group: number | null = null;
    const problem = this.checkPeer(call, (uris) => {
      for (const uri of uris) {
        const m = /^urn:eraftkv:group:(\d+):node:\d+$/.exec(uri);
        if (m !== null) {
          group = Number(m[1]);
          return null;
        }
      }
      return 'no member';
    });
    return problem === null ? group : null;
  }

  /** Whether the port verifies client certificates (--client-cert-auth), so that CNs name users. */
  get verifiesClients(): boolean {
    return this.clientCertAuth;
  }

  /** Whether members are told apart by peer certificates (--peer-*-file). */
  get verifiesPeers(): boolean {
    return this.peer !== null;
  }

  /** Reads every file again now (SIGHUP). */
  reload(): void {
    this.server.reload();
    this.peer?.reload();
  }

  close(): void {
    this.server.close();
    this.peer?.close();
  }

  /**
   * What a call's peer certificate says, read once per call: a stream's messages (a peer's appends)
   * share it, so the certificate is parsed and its signature verified once per stream, not once
   * per message (that was 40% of a follower's CPU under load). A reload of the CA files checks it
   * again.
   */
  private readonly presented = new WeakMap<PeerCall, PresentedPeer>();

  private presentedPeer(call: PeerCall): PresentedPeer | null {
    const cas = this.peer?.caCertificates('--peer-trusted-ca-file') ?? [];
    const known = this.presented.get(call);
    if (known !== undefined && known.cas === cas) return known;
    const presented = call.getAuthContext().sslPeerCertificate;
    if (presented === undefined || presented.raw === undefined) return null;
    const cert = new X509Certificate(presented.raw);
    const peer: PresentedPeer = {
      cas,
      // Only the peer CA vouches for members: a client CA may not mint a member's certificate.
      signed: cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey)),
      uris: uriNames(cert),
      subject: cert.subject.replace(/\n/g, ', '),
      validFrom: cert.validFrom,
      validTo: cert.validTo,
      validFromMs: Date.parse(cert.validFrom),
      validToMs: Date.parse(cert.validTo),
    };
    this.presented.set(call, peer);
    return peer;
  }

  private checkPeer(
    call: PeerCall,
    names: (uris: string[]) => string | null,
  ): ReturnType<PeerAuthenticator> {
    const cert = this.presentedPeer(call);
    if (cert === null) {
      return { kind: 'unauthenticated', message: 'a peer RPC needs a peer certificate' };
    }
    const now = Date.now();
    if (now < cert.validFromMs || now > cert.validToMs) {
      return {
        kind: 'unauthenticated',
        message: `the peer certificate is not valid now (${cert.validFrom} to ${cert.validTo})`,
      };
    }
    if (!cert.signed) {
      return {
        kind: 'unauthenticated',
        message: `the certificate of ${cert.subject} is not signed by a --peer-trusted-ca-file CA`,
      };
    }
    const problem = names(cert.uris);
    return problem === null ? null : { kind: 'permission-denied', message: problem };
  }
}
