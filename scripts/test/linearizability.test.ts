// The linearizability checker of the fault-tolerance suite, on hand-written histories (legal ones
// pass, each classic anomaly fails with an explanation naming the culprit), against a brute-force
// oracle on small random histories, and on 10,000 operations from a simulated correct register.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  HistoryRecorder,
  InvalidHistoryError,
  loadHistory,
  parseHistory,
  saveHistory,
  serializeHistory,
  splitHistoryByKey,
  type Operation,
} from '../chaos/history';
import {
  checkKeyHistory,
  checkLinearizability,
  formatReport,
  type CheckResult,
} from '../chaos/linearizability';

/** mulberry32: a tiny seeded PRNG, so that every history here is reproducible from its seed. */
function seededRandom(seed: number): { next: () => number; int: (bound: number) => number } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (bound) => Math.floor(next() * bound) };
}

let nextId = 0;
function write(
  client: number,
  value: string | null,
  invoke: number,
  complete: number | null,
  key = 'k',
): Operation {
  return {
    id: nextId++,
    client,
    kind: 'write',
    key,
    value,
    invoke,
    complete,
    ok: complete !== null,
  };
}
function read(
  client: number,
  value: string | null,
  invoke: number,
  complete: number | null,
  key = 'k',
): Operation {
  return {
    id: nextId++,
    client,
    kind: 'read',
    key,
    value,
    invoke,
    complete,
    ok: complete !== null,
  };
}

/** The result in one string, so that a failed assertion shows the seed and the whole report. */
function verdict(result: CheckResult, seed?: number): string {
  const prefix = seed === undefined ? '' : `seed ${seed}: `;
  return result.ok ? `${prefix}ok` : `${prefix}${formatReport(result)}`;
}

describe('checkLinearizability on legal histories', () => {
  it('accepts an empty history', () => {
    expect(verdict(checkLinearizability([]))).toBe('ok');
  });

  it('accepts a sequential history of writes, reads and a delete', () => {
    const history = [
      read(1, null, 0, 1),
      write(1, 'a', 2, 3),
      read(2, 'a', 4, 5),
      write(2, 'b', 6, 7),
      read(1, 'b', 8, 9),
      write(1, null, 10, 11),
      read(2, null, 12, 13),
      write(2, 'c', 14, 15),
      read(1, 'c', 16, 17),
    ];
    expect(verdict(checkLinearizability(history))).toBe('ok');
  });

  it('accepts concurrent writes read in either order', () => {
    for (const [first, second] of [
      ['a', 'b'],
      ['b', 'a'],
    ]) {
      const writes = [write(1, 'a', 0, 10), write(2, 'b', 1, 9)];
      const steady = [...writes, read(3, first, 11, 12), read(4, first, 13, 14)];
      expect(verdict(checkLinearizability(steady))).toBe('ok');
      // Once both writes have completed the order is settled, so the value cannot change again.
      const flipping = [...writes, read(3, first, 11, 12), read(4, second, 13, 14)];
      expect(checkLinearizability(flipping).ok).toBe(false);
    }
  });

  it('accepts a read concurrent with a write seeing the old or the new value', () => {
    for (const seen of ['old', 'new']) {
      const history = [write(1, 'old', 0, 1), write(1, 'new', 10, 20), read(2, seen, 12, 18)];
      expect(verdict(checkLinearizability(history))).toBe('ok');
    }
  });

  it('accepts reads that move forward through a slow write', () => {
    const history = [
      write(1, 'old', 0, 1),
      write(1, 'new', 10, 100),
      read(2, 'old', 12, 18),
      read(2, 'new', 20, 30),
      read(3, 'new', 40, 50),
    ];
    expect(verdict(checkLinearizability(history))).toBe('ok');
  });

  it('accepts an unknown-outcome write whether it is observed or not', () => {
    const observed = [
      write(1, 'a', 0, 1),
      write(1, 'lost?', 5, null),
      read(2, 'a', 10, 11),
      read(2, 'lost?', 500, 501),
      read(3, 'lost?', 600, 601),
    ];
    expect(verdict(checkLinearizability(observed))).toBe('ok');
    const neverObserved = [
      write(1, 'a', 0, 1),
      write(1, 'lost?', 5, null),
      read(2, 'a', 10, 11),
      read(2, 'a', 500, 501),
    ];
    expect(verdict(checkLinearizability(neverObserved))).toBe('ok');
    // An unknown write can take effect long after its client gave up.
    const late = [write(1, 'a', 0, 1), write(1, 'b', 5, null), read(2, 'a', 900, 901)];
    expect(verdict(checkLinearizability([...late, read(2, 'b', 1000, 1001)]))).toBe('ok');
  });

  it('accepts an unknown-outcome delete observed or not, and ignores unknown reads', () => {
    const history = [
      write(1, 'a', 0, 1),
      write(1, null, 5, null),
      read(2, 'a', 10, 11),
      read(3, 'nonsense', 12, null),
      read(2, null, 20, 21),
    ];
    expect(verdict(checkLinearizability(history))).toBe('ok');
  });

  it('treats operations that touch in time as concurrent (calls before returns at equal times)', () => {
    // The write returns at 10 and the read is invoked at 10: either may have come first.
    expect(verdict(checkLinearizability([write(1, 'a', 0, 10), read(2, null, 10, 20)]))).toBe('ok');
    expect(verdict(checkLinearizability([read(2, 'a', 0, 10), write(1, 'a', 10, 20)]))).toBe('ok');
    // One tick apart, the order is real.
    expect(checkLinearizability([write(1, 'a', 0, 10), read(2, null, 11, 20)]).ok).toBe(false);
  });

  it('checks keys independently and reports each', () => {
    const history = [
      write(1, 'x1', 0, 1, 'x'),
      write(2, 'y1', 0, 1, 'y'),
      read(1, 'y1', 2, 3, 'y'),
      read(2, 'x1', 2, 3, 'x'),
    ];
    const result = checkLinearizability(history);
    expect(verdict(result)).toBe('ok');
    expect(result.perKey.map((k) => [k.key, k.result, k.operations])).toEqual([
      ['x', 'ok', 2],
      ['y', 'ok', 2],
    ]);
  });
});

describe('checkLinearizability on violations', () => {
  /** Checks that both the real-time proofs and the search alone reject the history. */
  function violationOf(history: Operation[]): { result: CheckResult; text: string } {
    const searched = checkLinearizability(history, { searchOnly: true });
    expect(searched.result).toBe('violation');
    expect(searched.perKey[0].steps).toBeGreaterThan(0);
    const result = checkLinearizability(history);
    expect(result.ok).toBe(false);
    expect(result.result).toBe('violation');
    expect(result.violations).toHaveLength(1);
    return { result, text: formatReport(result) };
  }

  it('fails a stale read: an overwritten value returned after the overwrite completed', () => {
    const w1 = write(1, 'v1', 0, 10);
    const w2 = write(1, 'v2', 20, 30);
    const stale = read(2, 'v1', 40, 50);
    const { result, text } = violationOf([w1, w2, stale]);
    const violation = result.violations[0];
    expect(violation.failedOperation).toBe(stale);
    expect(violation.explanation).toContain(`Read #${stale.id}`);
    expect(violation.explanation).toContain('stale');
    expect(violation.explanation).toContain(`#${w2.id}`);
    expect(violation.possibleValues.map((p) => p.value)).toEqual(['v2']);
    expect(violation.operations).toEqual(expect.arrayContaining([w1, w2, stale]));
    expect(text).toContain('NOT LINEARIZABLE');
    expect(text).toContain(`>> unplaced   #${stale.id}`);
  });

  it('fails a lost write: a completed write never visible while later reads see the older value', () => {
    const w1 = write(1, 'v1', 0, 10);
    const lost = write(1, 'v2', 20, 30);
    const history = [w1, lost, read(2, 'v1', 35, 40), read(3, 'v1', 60, 70)];
    const { result } = violationOf(history);
    const { explanation } = result.violations[0];
    expect(explanation).toContain(`#${lost.id}`);
    expect(explanation).toContain('lost write');
  });

  it('fails a read of a value that was never written', () => {
    const ghost = read(2, 'ghost', 20, 30);
    const { result } = violationOf([write(1, 'v1', 0, 10), ghost]);
    expect(result.violations[0].failedOperation).toBe(ghost);
    expect(result.violations[0].explanation).toContain('no operation in the history wrote');
  });

  it('fails a read that goes back in time: new then old in two sequential reads', () => {
    const w1 = write(1, 'old', 0, 10);
    const w2 = write(1, 'new', 20, 100);
    const sawNew = read(2, 'new', 30, 40);
    const sawOld = read(2, 'old', 50, 60);
    const { result } = violationOf([w1, w2, sawNew, sawOld]);
    const violation = result.violations[0];
    expect(violation.failedOperation).toBe(sawOld);
    expect(violation.explanation).toContain('went back in time');
    expect(violation.explanation).toContain(`#${sawNew.id}`);
  });

  it('fails a read from the future and a delete that did not stick', () => {
    const future = read(2, 'later', 0, 10);
    expect(violationOf([future, write(1, 'later', 20, 30)]).text).toContain('from the future');
    // An unknown outcome does not help: the write may take effect late, never early.
    const early = read(2, 'unsure', 0, 10);
    expect(violationOf([early, write(1, 'unsure', 20, null)]).text).toContain('from the future');
    const history = [write(1, 'a', 0, 10), write(1, null, 20, 30), read(2, 'a', 40, 50)];
    expect(violationOf(history).result.violations[0].explanation).toContain('stale');
  });

  it('fails a history that needs the search to see the problem, and says what was possible', () => {
    // Each read alone is fine; together they need a before b and b before a.
    const a = write(1, 'a', 0, 100);
    const b = write(2, 'b', 0, 100);
    const history = [a, b, read(3, 'a', 10, 20), read(3, 'b', 30, 40), read(4, 'a', 50, 60)];
    const { result } = violationOf(history);
    const violation = result.violations[0];
    expect(result.perKey[0].steps).toBeGreaterThan(0);
    // The search gets stuck on the read of "b", whose write cannot overwrite "a" while a later
    // read of "a" is still to come.
    expect(violation.failedOperation).toBe(history[3]);
    expect(violation.explanation).toContain(`reads of "a" (#${history[4].id} invoked at 50)`);
    expect(violation.possibleValues.map((p) => [p.value, p.current])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    expect(violation.operations).toEqual(expect.arrayContaining(history));
  });

  it('explains a stale read the search finds without the real-time proofs', () => {
    const w1 = write(1, 'v1', 0, 10);
    const w2 = write(1, 'v2', 20, 30);
    const stale = read(2, 'v1', 40, 50);
    const result = checkLinearizability([w1, w2, stale], { searchOnly: true });
    const violation = result.violations[0];
    expect(violation.failedOperation).toBe(w2);
    expect(violation.linearizedTail).toEqual([w1]);
    expect(violation.explanation).toContain(`reads of "v1" (#${stale.id} invoked at 40)`);
    expect(violation.operations).toEqual([w1, w2, stale]);
  });
});

describe('checkLinearizability against a brute-force oracle', () => {
  /** Tries every subset of unknown writes and every order that respects real time. */
  function bruteForce(history: readonly Operation[]): boolean {
    const known = history.filter((op) => op.complete !== null && op.ok);
    const unknownWrites = history.filter((op) => op.kind === 'write' && !op.ok);
    for (let mask = 0; mask < 1 << unknownWrites.length; mask++) {
      const ops = [...known, ...unknownWrites.filter((_, i) => (mask & (1 << i)) !== 0)];
      if (someOrderWorks(ops, [], null)) return true;
    }
    return false;
  }
  function someOrderWorks(rest: Operation[], placed: Operation[], value: string | null): boolean {
    if (rest.length === 0) return true;
    for (const op of rest) {
      // op may go next only if nothing left had to finish strictly before op was invoked.
      const blocked = rest.some((o) => o !== op && o.complete !== null && o.complete < op.invoke);
      if (blocked) continue;
      if (op.kind === 'read' && op.value !== value) continue;
      const after = op.kind === 'write' ? op.value : value;
      const others = rest.filter((o) => o !== op);
      if (someOrderWorks(others, [...placed, op], after)) return true;
    }
    return false;
  }

  it('agrees on 400 random small histories', () => {
    let violations = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const random = seededRandom(seed);
      const history: Operation[] = [];
      const count = 2 + random.int(6);
      const values = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
      for (let i = 0; i < count; i++) {
        const invoke = random.int(12);
        const complete = random.next() < 0.15 ? null : invoke + random.int(6);
        const isWrite = random.next() < 0.5;
        const value = random.next() < 0.2 ? null : isWrite ? values[i] : values[random.int(count)];
        history.push(
          isWrite ? write(i, value, invoke, complete) : read(i, value, invoke, complete),
        );
      }
      const expected = bruteForce(history);
      if (!expected) violations++;
      const result = checkLinearizability(history);
      expect(`seed ${seed}: ${result.ok}`).toBe(`seed ${seed}: ${expected}`);
      const searched = checkLinearizability(history, { searchOnly: true });
      expect(`seed ${seed}, search only: ${searched.ok}`).toBe(
        `seed ${seed}, search only: ${expected}`,
      );
    }
    // Both answers must be well represented for the agreement to mean anything.
    expect(violations).toBeGreaterThan(50);
    expect(violations).toBeLessThan(350);
  });
});

interface SimulationOptions {
  operations: number;
  keys: number;
  clients: number;
  unknownWriteRate: number;
}

/**
 * A correct linearizable register under concurrent clients: random overlapping intervals, each
 * operation taking effect at a random instant inside its interval (an unknown-outcome write at any
 * instant after its invoke, or never), reads returning what the register held at that instant.
 */
function simulateRegisterHistory(seed: number, options: SimulationOptions): Operation[] {
  const random = seededRandom(seed);
  const clock = Array.from({ length: options.clients }, () => random.int(10));
  const pending: { op: Operation; at: number | null }[] = [];
  const sequence = new Array<number>(options.clients).fill(0);
  for (let id = 0; id < options.operations; id++) {
    let client = 0;
    for (let c = 1; c < options.clients; c++) if (clock[c] < clock[client]) client = c;
    const invoke = clock[client] + random.int(5);
    const duration = 1 + random.int(40);
    clock[client] = invoke + duration;
    const key = `key-${random.int(options.keys)}`;
    const roll = random.next();
    if (roll < 0.5) {
      const unknown = random.next() < 0.02;
      const op: Operation = {
        id,
        client,
        kind: 'read',
        key,
        value: null,
        invoke,
        complete: unknown ? null : invoke + duration,
        ok: !unknown,
      };
      pending.push({ op, at: invoke + random.next() * duration });
    } else {
      const value = roll < 0.9 ? `${key}/c${client}/${sequence[client]++}` : null;
      const unknown = random.next() < options.unknownWriteRate;
      const op: Operation = {
        id,
        client,
        kind: 'write',
        key,
        value,
        invoke,
        complete: unknown ? null : invoke + duration,
        ok: !unknown,
      };
      const at = unknown
        ? random.next() < 0.3
          ? null
          : invoke + random.next() * 400
        : invoke + random.next() * duration;
      pending.push({ op, at });
    }
  }
  const register = new Map<string, string | null>();
  const history: Operation[] = [];
  const effective = pending.flatMap(({ op, at }) => (at === null ? [] : [{ op, at }]));
  effective.sort((a, b) => a.at - b.at);
  for (const { op } of effective) {
    if (op.kind === 'write') register.set(op.key, op.value);
    else if (op.ok) history.push({ ...op, value: register.get(op.key) ?? null });
  }
  for (const p of pending) {
    if (p.op.kind === 'write' || !p.op.ok) history.push(p.op);
  }
  return history.sort((a, b) => a.invoke - b.invoke || a.id - b.id);
}

/**
 * Replaces one read's value by an older one that real time alone proves was overwritten before the
 * read began: written by a write that completed before another write began, which completed before
 * the read was invoked.
 */
function corruptOneRead(
  history: Operation[],
  seed: number,
): { corrupted: Operation[]; read: Operation } {
  const random = seededRandom(seed ^ 0xbad);
  const knownWrites = history.filter(
    (op) => op.kind === 'write' && op.ok && op.value !== null && op.complete !== null,
  );
  const reads = history.filter((op) => op.kind === 'read' && op.ok);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const target = reads[random.int(reads.length)];
    const onKey = knownWrites.filter((w) => w.key === target.key);
    const overwritten = onKey.find(
      (old) =>
        old.value !== target.value &&
        onKey.some(
          (w) =>
            w !== old &&
            (old.complete ?? Infinity) < w.invoke &&
            (w.complete ?? Infinity) < target.invoke,
        ),
    );
    if (overwritten === undefined) continue;
    const corruptedRead: Operation = { ...target, value: overwritten.value };
    return {
      corrupted: history.map((op) => (op === target ? corruptedRead : op)),
      read: corruptedRead,
    };
  }
  throw new Error(`seed ${seed}: no read to corrupt`);
}

describe('checkLinearizability on simulated runs', () => {
  const large: SimulationOptions = {
    operations: 10_000,
    keys: 20,
    clients: 8,
    unknownWriteRate: 0.03,
  };

  it('checks 10,000 operations over 20 keys from 8 clients in a few seconds', () => {
    const seed = 20240501;
    const history = simulateRegisterHistory(seed, large);
    expect(history.filter((op) => !op.ok).length).toBeGreaterThan(50);
    const started = performance.now();
    const result = checkLinearizability(history);
    const elapsedMs = performance.now() - started;
    expect(verdict(result, seed)).toBe(`seed ${seed}: ok`);
    expect(result.keys).toBe(20);
    expect(result.operations).toBe(history.length);
    expect(elapsedMs).toBeLessThan(5_000);
    console.log(
      `seed ${seed}: ${history.length} operations checked in ${elapsedMs.toFixed(0)} ms, ` +
        `${result.perKey.reduce((sum, k) => sum + k.steps, 0)} steps`,
    );
  });

  it('fails the same history with one read turned stale, naming that read', () => {
    const seed = 20240501;
    const { corrupted, read: stale } = corruptOneRead(simulateRegisterHistory(seed, large), seed);
    const result = checkLinearizability(corrupted);
    const where = `seed ${seed}, read #${stale.id}`;
    expect(`${where}: ${result.result}`).toBe(`${where}: violation`);
    expect(`${where}: ${result.violations.map((v) => v.key).join()}`).toBe(
      `${where}: ${stale.key}`,
    );
    const violation = result.violations[0];
    expect(`${where}: ${violation.failedOperation.id}`).toBe(`${where}: ${stale.id}`);
    expect(violation.explanation).toContain('stale');
    expect(violation.operations.length).toBeLessThan(80);
    expect(result.perKey.filter((k) => k.result === 'ok')).toHaveLength(19);

    // The search alone finds it too, and its window shows the read.
    const searched = checkLinearizability(corrupted, { searchOnly: true });
    expect(`${where}: ${searched.result}`).toBe(`${where}: violation`);
    const found = searched.violations[0];
    expect(`${where}: ${found.key}`).toBe(`${where}: ${stale.key}`);
    expect(found.operations.map((op) => op.id)).toContain(stale.id);
    expect(found.operations.length).toBeLessThan(80);
  });

  it('passes and fails the same way on other seeds and on one hot key', () => {
    const cases: [number, SimulationOptions][] = [
      [1, { operations: 3000, keys: 5, clients: 6, unknownWriteRate: 0.05 }],
      [2, { operations: 3000, keys: 10, clients: 12, unknownWriteRate: 0.02 }],
      [3, { operations: 3000, keys: 1, clients: 8, unknownWriteRate: 0.03 }],
      [4, { operations: 2000, keys: 1, clients: 16, unknownWriteRate: 0.1 }],
    ];
    for (const [seed, options] of cases) {
      const history = simulateRegisterHistory(seed, options);
      expect(verdict(checkLinearizability(history), seed)).toBe(`seed ${seed}: ok`);
      const { corrupted, read: stale } = corruptOneRead(history, seed);
      const result = checkLinearizability(corrupted);
      const where = `seed ${seed}, read #${stale.id}`;
      expect(`${where}: ${result.result}`).toBe(`${where}: violation`);
      expect(`${where}: ${result.violations[0].failedOperation.id}`).toBe(`${where}: ${stale.id}`);
    }
  });

  it('gives up with "unknown" when the step budget runs out', () => {
    const seed = 7;
    const history = simulateRegisterHistory(seed, { ...large, operations: 500 });
    const result = checkLinearizability(history, { stepsPerKeyMax: 10 });
    expect(result.ok).toBe(false);
    expect(result.result).toBe('unknown');
    expect(result.violations).toEqual([]);
    expect(result.perKey.every((k) => k.result === 'unknown' && k.steps === 10)).toBe(true);
    expect(formatReport(result)).toContain('undecided after 10 steps');
  });

  it('is deterministic: the same history gives the same result and steps', () => {
    const seed = 11;
    const { corrupted } = corruptOneRead(simulateRegisterHistory(seed, large), seed);
    expect(checkLinearizability(corrupted)).toEqual(checkLinearizability(corrupted));
  });
});

describe('history', () => {
  it('round-trips through JSON lines, one object per line', () => {
    const history = [write(1, 'a', 0, 1.5), read(2, null, 2, null), write(3, null, 3, 4, 'other')];
    const text = serializeHistory(history);
    expect(text.trimEnd().split('\n')).toHaveLength(3);
    expect(parseHistory(text)).toEqual(history);
    expect(() => parseHistory('{"id":1}\n')).toThrow('history line 1');
  });

  it('saves to and loads from a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'eraftkv-history-'));
    try {
      const history = [write(1, 'a', 0, 1), read(2, 'a', 2, 3)];
      const path = join(dir, 'run-1', 'history.jsonl');
      await saveHistory(path, history);
      expect(await loadHistory(path)).toEqual(history);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('splits a history by key, keeping the order', () => {
    const history = [write(1, 'a', 0, 1, 'x'), write(1, 'b', 2, 3, 'y'), read(1, 'a', 4, 5, 'x')];
    const byKey = splitHistoryByKey(history);
    expect([...byKey.keys()]).toEqual(['x', 'y']);
    expect(byKey.get('x')).toEqual([history[0], history[2]]);
  });

  it('rejects a history that breaks the recorder contract', () => {
    const duplicate = [write(1, 'same', 0, 1), write(2, 'same', 2, 3)];
    expect(() => checkLinearizability(duplicate)).toThrow(InvalidHistoryError);
    const backwards = [read(1, null, 5, 4)];
    expect(() => checkLinearizability(backwards)).toThrow('completes before it is invoked');
    expect(() => checkKeyHistory('k', [write(1, 'a', 0, 1, 'other')])).toThrow('not k');
  });

  it('records ok and unknown operations and drops definite failures', () => {
    let now = 0;
    const recorder = new HistoryRecorder({ now: () => now++ });
    const w = recorder.invokeWrite(1, 'k', 'a');
    const refused = recorder.invokeWrite(2, 'k', 'b');
    const timedOut = recorder.invokeWrite(3, 'k', 'c');
    recorder.ok(w);
    recorder.fail(refused);
    recorder.unknown(timedOut);
    const r = recorder.invokeRead(1, 'k');
    recorder.ok(r, 'a');
    recorder.invokeRead(2, 'k'); // still in flight when the run ends
    const history = recorder.history();
    expect(history.map((op) => [op.kind, op.value, op.ok, op.complete])).toEqual([
      ['write', 'a', true, 3],
      ['write', 'c', false, null],
      ['read', 'a', true, 5],
      ['read', null, false, null],
    ]);
    expect(verdict(checkLinearizability(history))).toBe('ok');
  });
});
