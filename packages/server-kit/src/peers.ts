// Parsing of peer lists as operators write them: `1=127.0.0.1:8088,2=127.0.0.1:8089`.
import type { Member } from '@eraftkv/raft';
import { InvalidArgumentError, peerNumberMax } from '@eraftkv/raft-server';

/** host:port as a peer address: no spaces, no colon in the host, a port of 1 to 5 digits. */
const peerAddressPattern = /^[^\s:]+:(\d{1,5})$/;

/**
 * Checks an address that arrived in a request (a member to add, a server to record); throws an
 * InvalidArgumentError (INVALID_ARGUMENT) that names `field`.
 */
export function checkPeerAddress(address: string, field: string): string {
  const m = peerAddressPattern.exec(address);
  const port = m === null ? 0 : Number(m[1]);
  if (port < 1 || port > 65535) {
    throw new InvalidArgumentError(
      `${field} "${address}" is not host:port (with a port in 1..65535)`,
    );
  }
  return address;
}

/** Parses `id=host:port,...` into voters; throws an Error that says what is wrong. */
export function parsePeers(text: string, flag = '--peers'): Member[] {
  const members: Member[] = [];
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`${flag}: "${part}" is not id=host:port`);
    const id = Number(part.slice(0, eq));
    const address = part.slice(eq + 1);
    if (!Number.isSafeInteger(id) || id <= 0 || id > peerNumberMax)
      throw new Error(
        `${flag}: node id "${part.slice(0, eq)}" must be a positive integer below 2^48`,
      );
    if (!peerAddressPattern.test(address))
      throw new Error(`${flag}: address "${address}" of node ${id} is not host:port`);
    if (members.some((m) => m.id === id)) throw new Error(`${flag}: node id ${id} appears twice`);
    if (members.some((m) => m.address === address))
      throw new Error(`${flag}: address ${address} appears twice`);
    // The incarnation is learned from the node itself before a group is bootstrapped.
    members.push({ id, address, learner: false, incarnation: 0 });
  }
  return members.sort((a, b) => a.id - b.id);
}

/** Formats members back into the --peers form. */
export function formatPeers(members: readonly Member[]): string {
  return members.map((m) => `${m.id}=${m.address}`).join(',');
}

/** Splits host:port, checking the port. */
export function splitHostPort(address: string, flag: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${flag}: "${address}" is not host:port`);
  }
  return { host: address.slice(0, colon), port };
}

/** Parses --peer-route (`id=host:port,...`) into a map from node id to the address to dial. */
export function parsePeerRoutes(text: string, flag = '--peer-route'): Map<number, string> {
  return new Map(parsePeers(text, flag).map((m) => [m.id, m.address]));
}

/**
 * Checks that a non-empty --peers lists this node: a node bootstraps a group it is a member of,
 * or (with an empty --peers) waits to be added to an existing one. Returns the error to report.
 */
export function peersMissingSelf(peers: readonly Member[], id: number): string | null {
  if (peers.length === 0 || peers.some((m) => m.id === id)) return null;
  return `--peers (${formatPeers(peers)}) does not list this node (--id ${id}): list it to bootstrap a new group, or give an empty --peers to join an existing one`;
}

/**
 * The one policy for a --peers that disagrees with the membership a data dir already holds, the
 * same for meta and kv nodes and the same as etcd's --initial-cluster: --peers is read only when
 * the data dir is new; afterwards the stored membership (changed since by member add and remove)
 * wins, and the difference is reported. Returns the warning to log, or null when they agree or
 * --peers is empty.
 */
export function peersDisagreement(
  peers: readonly Member[],
  stored: readonly Member[],
  dataDir: string,
): string | null {
  if (peers.length === 0 || stored.length === 0) return null;
  const given = formatPeers([...peers].sort((a, b) => a.id - b.id));
  const held = formatPeers([...stored].sort((a, b) => a.id - b.id));
  if (given === held) return null;
  return `--peers (${given}) disagrees with the membership stored in --data-dir ${dataDir} (${held}); the stored membership wins (--peers is only read when the data dir is new; change members with eraftkv-ctl member add/remove)`;
}

/**
 * When the membership records this node at another address than it now advertises (its name or
 * port changed since it joined), peers keep dialling the recorded one: the warning to log, or
 * null. There is no port 0 here (a test that binds any port advertises nothing of its own).
 */
export function advertisedAddressProblem(
  membership: readonly Member[],
  id: number,
  advertise: string | undefined,
): string | null {
  if (advertise === undefined || advertise.endsWith(':0')) return null;
  const self = membership.find((m) => m.id === id);
  if (self === undefined || self.address === advertise) return null;
  return `the group records this node (id ${id}) at ${self.address}, but it advertises ${advertise}: peers and clients keep dialling ${self.address}; remove the member and add it again at the new address to change it`;
}
