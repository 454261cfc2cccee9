// The chaos suite's watch check (scripts/chaos/watchers.ts) on hand-made histories: what it accepts
// and each kind of wrong watch it must report.
import type { Operation } from '../chaos/history';
import { watcherProblems } from '../chaos/watchers';

let nextId = 0;
/** A put of `key`=`value` sent at `invoke` and acknowledged at `complete` (null: unknown). */
function put(key: string, value: string, invoke: number, complete: number | null): Operation {
  return {
    id: ++nextId,
    client: 0,
    kind: 'write',
    key,
    value,
    invoke,
    complete,
    ok: complete !== null,
  };
}

function seen(...events: [string, string, number, number?][]) {
  return events.map(([key, value, revision, group]) => ({
    group: group ?? 1,
    revision,
    type: 'put' as const,
    key,
    value,
  }));
}

const history: Operation[] = [
  put('k1', 'a', 0, 10),
  put('k1', 'b', 20, 30),
  put('k2', 'c', 5, 25),
  put('k1', 'lost?', 40, null),
];
const prefix = { key: 'k', prefix: true };

describe('the chaos watch check', () => {
  it('accepts a watcher that saw every acknowledged write once, in order', () => {
    expect(
      watcherProblems(
        { ...prefix, seen: seen(['k1', 'a', 3], ['k2', 'c', 4], ['k1', 'b', 6]) },
        history,
      ),
    ).toEqual([]);
    // A write of unknown outcome may or may not show; a key watch sees its key only.
    expect(
      watcherProblems(
        {
          key: 'k1',
          prefix: false,
          seen: seen(['k1', 'a', 3], ['k1', 'b', 6], ['k1', 'lost?', 9]),
        },
        history,
      ),
    ).toEqual([]);
  });

  it('reports a missed write, a repeated one, an invented one and a foreign key', () => {
    const problems = watcherProblems(
      {
        key: 'k1',
        prefix: false,
        seen: seen(['k1', 'a', 3], ['k1', 'a', 3], ['k1', 'zzz', 5], ['k2', 'c', 4, 2]),
      },
      history,
    );
    expect(problems).toEqual([
      'saw the put of k1=a twice',
      'saw k1=zzz, which no client wrote',
      'got k2, which it does not watch',
      expect.stringMatching(/^never saw the acknowledged put k1=b/),
    ]);
  });

  it('reports writes out of real-time order and a group going back in revisions', () => {
    expect(
      watcherProblems(
        { ...prefix, seen: seen(['k1', 'b', 6], ['k2', 'c', 4], ['k1', 'a', 7]) },
        history,
      ),
    ).toEqual([
      'group 1: revision 4 came after revision 6',
      'key k1: saw b before a, though a was acknowledged before b was sent',
    ]);
    // Across groups revisions are not compared.
    expect(
      watcherProblems(
        { ...prefix, seen: seen(['k1', 'a', 30, 1], ['k2', 'c', 4, 2], ['k1', 'b', 31, 1]) },
        history,
      ),
    ).toEqual([]);
  });
});
