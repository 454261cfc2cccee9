import { parseRestoreLayout, LayoutError, layoutGroups } from '../src/restore-layout';

const meta = `meta:
  - { id: 1, address: "m1.example:8088", data-dir: /d/meta-1 }
  - { id: 2, address: "m2.example:8088", data-dir: /d/meta-2 }
`;
const kv = `kv:
  - { group: 2, id: 1, address: "k21.example:7088", data-dir: /d/kv-2-1 }
  - { group: 1, id: 2, address: "k12.example:7088", data-dir: /d/kv-1-2 }
  - { group: 1, id: 1, address: "k11.example:7088", data-dir: kv-1-1 }
`;

describe('the restore layout', () => {
  it('reads nodes, sorts kv nodes by group and id, and anchors relative data dirs at the file', () => {
    const layout = parseRestoreLayout(`cluster-id: new\n${meta}${kv}`, '/etc/eraftkv/layout.yaml');
    expect(layout.clusterId).toBe('new');
    expect(layout.meta.map((n) => [n.kind, n.group, n.id, n.address, n.dataDir])).toEqual([
      ['meta', 0, 1, 'm1.example:8088', '/d/meta-1'],
      ['meta', 0, 2, 'm2.example:8088', '/d/meta-2'],
    ]);
    expect(layout.kv.map((n) => [n.group, n.id, n.dataDir])).toEqual([
      [1, 1, '/etc/eraftkv/kv-1-1'],
      [1, 2, '/d/kv-1-2'],
      [2, 1, '/d/kv-2-1'],
    ]);
    expect([...layoutGroups(layout)].map(([g, nodes]) => [g, nodes.length])).toEqual([
      [1, 2],
      [2, 1],
    ]);
  });

  it('reads JSON, and a layout without a cluster id (the flag then gives it)', () => {
    const layout = parseRestoreLayout(
      JSON.stringify({
        meta: [{ id: 1, address: '10.0.0.1:8088', 'data-dir': '/a' }],
        kv: [{ group: 1, id: 1, address: '[::1]:7088', 'data-dir': '/b' }],
      }),
      'l.json',
    );
    expect(layout.clusterId).toBeNull();
    expect(layout.kv[0].address).toBe('[::1]:7088');
  });

  it.each([
    ['not YAML', 'meta: [', 'not valid YAML or JSON'],
    ['a list', '- 1', 'must be a map with the keys cluster-id, meta and kv'],
    ['an unknown key', `clusterid: x\n${meta}${kv}`, 'unknown key "clusterid"'],
    ['no kv node', `${meta}kv: []\n`, '"kv" must be a list of at least one node'],
    ['no meta', kv, '"meta" must be a list of at least one node'],
    [
      'an empty cluster id',
      `cluster-id: ""\n${meta}${kv}`,
      'cluster-id must be a non-empty string',
    ],
    [
      'an unknown node key',
      `${meta}kv:\n  - { group: 1, id: 1, address: "a:1", datadir: /x }\n`,
      'kv[0]: unknown key "datadir" (the keys are group, id, address, data-dir)',
    ],
    [
      'a kv node without group',
      `${meta}kv:\n  - { id: 1, address: "a:1", data-dir: /x }\n`,
      'kv[0]: group must be an integer in 1..2147483647',
    ],
    [
      'id 0',
      `meta:\n  - { id: 0, address: "a:1", data-dir: /x }\n${kv}`,
      'meta[0]: id must be an integer in 1..2147483647',
    ],
    [
      'a port out of range',
      `meta:\n  - { id: 1, address: "a:70000", data-dir: /x }\n${kv}`,
      'meta[0]: address "a:70000" is not host:port',
    ],
    [
      'a wildcard address',
      `meta:\n  - { id: 1, address: "0.0.0.0:8088", data-dir: /x }\n${kv}`,
      'meta[0]: address "0.0.0.0:8088" is a wildcard',
    ],
    [
      'a node twice',
      `${meta}kv:\n  - { group: 1, id: 1, address: "a:1", data-dir: /x }\n  - { group: 1, id: 1, address: "b:1", data-dir: /y }\n`,
      'kv node 1 of group 1 appears twice',
    ],
    [
      'an address twice',
      `${meta}kv:\n  - { group: 1, id: 1, address: "m1.example:8088", data-dir: /x }\n`,
      'address m1.example:8088 appears twice',
    ],
    [
      'a data dir twice',
      `${meta}kv:\n  - { group: 1, id: 1, address: "a:1", data-dir: /d/meta-2 }\n`,
      'data-dir /d/meta-2 appears twice',
    ],
    [
      'a data dir inside another',
      `${meta}kv:\n  - { group: 1, id: 1, address: "a:1", data-dir: /d/meta-1/kv }\n`,
      'data-dir /d/meta-1/kv is inside data-dir /d/meta-1',
    ],
    ['a duplicate key', `${meta}${kv}kv: []\n`, 'not valid YAML or JSON'],
  ])('refuses %s, naming the file', (_what, text, message) => {
    expect(() => parseRestoreLayout(text, 'bad.yaml')).toThrow(LayoutError);
    expect(() => parseRestoreLayout(text, 'bad.yaml')).toThrow(`--layout bad.yaml: ${message}`);
  });
});
