// The peer-list rules both binaries share: --peers must list the node itself, and a --peers that
// disagrees with the membership a data dir holds is reported the same way by meta and kv nodes.
import { parsePeers, peersDisagreement, peersMissingSelf } from '../src';

describe('peersMissingSelf', () => {
  it('accepts an empty --peers (join) and one that lists the node', () => {
    expect(peersMissingSelf([], 3)).toBeNull();
    expect(peersMissingSelf(parsePeers('1=h:1,3=h:3'), 3)).toBeNull();
  });

  it('names the flag, the list and the node id when the node is missing', () => {
    expect(peersMissingSelf(parsePeers('1=h:1,2=h:2'), 3)).toBe(
      '--peers (1=h:1,2=h:2) does not list this node (--id 3): list it to bootstrap a new group, or give an empty --peers to join an existing one',
    );
  });
});

describe('peersDisagreement', () => {
  const stored = parsePeers('1=h:1,2=h:2,4=h:4');

  it('says nothing when --peers is empty, the data dir is new, or both agree (in any order)', () => {
    expect(peersDisagreement([], stored, '/d')).toBeNull();
    expect(peersDisagreement(parsePeers('1=h:1'), [], '/d')).toBeNull();
    expect(peersDisagreement([...stored].reverse(), stored, '/d')).toBeNull();
  });

  it('names the flag, the data dir and both member lists, and says the stored one wins', () => {
    expect(peersDisagreement(parsePeers('1=h:1,2=h:2,3=h:3'), stored, '/data/kv-1-1')).toBe(
      '--peers (1=h:1,2=h:2,3=h:3) disagrees with the membership stored in --data-dir /data/kv-1-1 (1=h:1,2=h:2,4=h:4); the stored membership wins (--peers is only read when the data dir is new; change members with eraftkv-ctl member add/remove)',
    );
  });
});
