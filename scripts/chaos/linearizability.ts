// Linearizability checker for the fault-tolerance suite: is there an order of the recorded
// operations, each placed at one instant inside its [invoke, complete] interval, in which every read
// returns the value of the latest write before it? The model is one register per key (initially
// absent; a write sets the value, null deletes it; a read returns the current value), and keys are
// checked independently, because linearizability is compositional (P-compositionality).
//
// The search is Wing & Gong's algorithm with the memoisation of Lowe and of porcupine
// (github.com/anishathalye/porcupine): the call and return events of a key's operations, sorted by
// time, form a doubly linked list; a depth-first search repeatedly linearizes a pending operation
// whose call precedes the first return left in the list (lifting both its events out of the list),
// backtracks when that first return belongs to an operation it could not linearize, and prunes any
// (set of linearized operations, register value) it has already explored, since what can follow
// depends on nothing else. A correct history is usually decided in one pass with no backtracking.
// Three additions keep it fast on highly concurrent keys, none changing the answer:
// - candidates are tried earliest deadline first rather than in call order (see openLevel);
// - a write is not linearized over a value that a read still has to return (see writeResult);
// - values no read returned share one model state, so orders of unobserved writes merge.
// Before the search, real-time proofs (see findProvenStaleRead) look for a read that no order can
// save: a value nobody wrote, or one written only after the read, or one overwritten before the
// read began. They run in O(n log n), catch the usual bugs even where the search would drown, and
// explain them with the three or four operations that prove them.
//
// Tie rule: at equal timestamps, calls sort before returns. Two operations that touch in time (one
// returns at t, the other is invoked at t) are therefore concurrent, and may be linearized either
// way. This is the conservative choice: a clock too coarse to separate them can never produce a
// false violation; at worst it hides a real one that happened within one clock tick. Events that
// tie further are ordered by (invoke, id) of their operations, so every run searches in the same
// order and reports the same result.
import { assertValidHistory, hasKnownOutcome, splitHistoryByKey, type Operation } from './history';

export interface CheckOptions {
  /**
   * Search steps per key after which that key's result is 'unknown' instead of running for hours on
   * a pathological history. The default (10 million) takes a few seconds.
   */
  stepsPerKeyMax?: number;
  /** Memory bound of one key's cache of explored states; past it the key is 'unknown' too. */
  cacheBytesPerKeyMax?: number;
  /** Skip the real-time proofs and let the search find every violation (to test the search). */
  searchOnly?: boolean;
}

export type KeyResultKind = 'ok' | 'violation' | 'unknown';

export interface KeyResult {
  readonly key: string;
  readonly ok: boolean;
  /** Operations on this key in the history. */
  readonly operations: number;
  /** Those the search had to place: unknown reads and unobservable unknown writes are dropped. */
  readonly checkedOperations: number;
  readonly steps: number;
  readonly result: KeyResultKind;
  /** Why the result is 'unknown' (which budget ran out). */
  readonly reason?: string;
}

export interface PossibleValue {
  readonly value: string | null;
  /** The write that set or would set it; null for the initial "absent". */
  readonly writer: Operation | null;
  /** True for the register's value in the partial linearization, false for a pending write. */
  readonly current: boolean;
}

export interface Violation {
  readonly key: string;
  /** What an engineer can act on: which operation cannot be placed, and why. */
  readonly explanation: string;
  /**
   * A window around the failure: the end of the longest linearizable prefix found (in its
   * linearization order), then the operations that could not be placed after it (by invoke time),
   * then any other operation the explanation names (e.g. the write of a stale value).
   */
  readonly operations: readonly Operation[];
  /**
   * The operation that cannot be placed: a read proven stale from real time alone when there is
   * one, else the one whose completion the search could not get past.
   */
  readonly failedOperation: Operation;
  /** How many operations the longest linearizable prefix holds (it is longer than the window). */
  readonly linearizedCount: number;
  /** The part of that prefix shown in `operations`. */
  readonly linearizedTail: readonly Operation[];
  /** Operations invoked before failedOperation completed and not in the prefix, failed one included. */
  readonly unplaced: readonly Operation[];
  /** The values a read could have returned at that point. */
  readonly possibleValues: readonly PossibleValue[];
}

export interface CheckResult {
  /** True when every key is linearizable; false on a violation or when a budget ran out. */
  readonly ok: boolean;
  readonly result: KeyResultKind;
  readonly keys: number;
  readonly operations: number;
  readonly perKey: readonly KeyResult[];
  readonly violations: readonly Violation[];
}

const stepsPerKeyMaxDefault = 10_000_000;
const cacheBytesPerKeyMaxDefault = 256 * 1024 * 1024;
/** How much of the linearized prefix a violation shows, besides the operations it must show. */
const windowTailOperationsMax = 24;

/** Checks a multi-key history; throws InvalidHistoryError when the recorder broke its contract. */
export function checkLinearizability(
  history: readonly Operation[],
  options: CheckOptions = {},
): CheckResult {
  assertValidHistory(history);
  const byKey = splitHistoryByKey(history);
  const perKey: KeyResult[] = [];
  const violations: Violation[] = [];
  for (const key of [...byKey.keys()].sort()) {
    const checked = checkKeyHistory(key, byKey.get(key) ?? [], options);
    perKey.push(checked.keyResult);
    if (checked.violation !== null) violations.push(checked.violation);
  }
  const result: KeyResultKind =
    violations.length > 0
      ? 'violation'
      : perKey.some((k) => k.result === 'unknown')
        ? 'unknown'
        : 'ok';
  return {
    ok: result === 'ok',
    result,
    keys: perKey.length,
    operations: history.length,
    perKey,
    violations,
  };
}

/** Checks the history of one key (every operation must be on `key`). */
export function checkKeyHistory(
  key: string,
  ops: readonly Operation[],
  options: CheckOptions = {},
): { keyResult: KeyResult; violation: Violation | null } {
  for (const op of ops) {
    if (op.key !== key) throw new Error(`operation #${op.id} is on key ${op.key}, not ${key}`);
  }
  const problem = prepareKey(key, ops);
  if (options.searchOnly !== true) {
    const facts = keyFacts(ops);
    const proven = findProvenStaleRead(facts, ops);
    if (proven !== null) {
      return {
        keyResult: {
          key,
          operations: ops.length,
          checkedOperations: problem.ops.length,
          steps: 0,
          ok: false,
          result: 'violation',
        },
        violation: provenViolation(key, facts, ops, proven),
      };
    }
  }
  const outcome = search(problem, {
    stepsMax: options.stepsPerKeyMax ?? stepsPerKeyMaxDefault,
    cacheBytesMax: options.cacheBytesPerKeyMax ?? cacheBytesPerKeyMaxDefault,
  });
  const base = {
    key,
    operations: ops.length,
    checkedOperations: problem.ops.length,
    steps: outcome.steps,
  };
  switch (outcome.kind) {
    case 'ok':
      return { keyResult: { ...base, ok: true, result: 'ok' }, violation: null };
    case 'unknown':
      return {
        keyResult: { ...base, ok: false, result: 'unknown', reason: outcome.reason },
        violation: null,
      };
    case 'violation':
      return {
        keyResult: { ...base, ok: false, result: 'violation' },
        violation: describeViolation(problem, outcome),
      };
  }
}

// ---------------------------------------------------------------------------------------------
// Preparation: what the search needs, in flat arrays.

interface KeyProblem {
  readonly key: string;
  /** The operations to place, sorted by (invoke, id); the search refers to them by index. */
  readonly ops: readonly Operation[];
  /** When each operation had surely taken effect: its completion, or +Infinity if unknown. */
  readonly completeAt: Float64Array;
  readonly isWrite: Uint8Array;
  /** Interned values, see absentValueId and unreadValueId. */
  readonly valueId: Int32Array;
  /** How many reads returned each value id. */
  readonly readers: Int32Array;
}

const absentValueId = 0;
/**
 * Every value that no read returned shares one id: a register holding one or another of them
 * allows exactly the same futures (no read can match either), and sharing the id lets the cache
 * merge the orders of unobserved writes, which would otherwise multiply the states to explore.
 */
const unreadValueId = 1;

function prepareKey(key: string, ops: readonly Operation[]): KeyProblem {
  // Known reads are the only evidence of an unknown write, so index them first.
  const firstReadOf = new Map<string, number>();
  let lastAbsentRead = -Infinity;
  for (const op of ops) {
    if (op.kind !== 'read' || !hasKnownOutcome(op)) continue;
    if (op.value === null) {
      lastAbsentRead = Math.max(lastAbsentRead, op.complete);
    } else {
      const seen = firstReadOf.get(op.value);
      if (seen === undefined || op.complete < seen) firstReadOf.set(op.value, op.complete);
    }
  }

  const kept: { op: Operation; completeAt: number }[] = [];
  for (const op of ops) {
    if (hasKnownOutcome(op)) {
      kept.push({ op, completeAt: op.complete });
    } else if (op.kind === 'read') {
      // An unknown read imposes nothing: any value it might have returned was never seen.
    } else if (op.value !== null) {
      // An unknown write that no read observed can be dropped: with unique values, removing an
      // unobserved write from a linearization leaves every read's value unchanged (and "never took
      // effect" is one of its legal outcomes). Without this, each one sits pending until +infinity
      // and the search tries it at every point. An observed one must take effect before the first
      // read that saw it returns, so that bounds it; a bound before its invoke means a read from the
      // future, which stays +infinity and is reported by the search.
      const firstRead = firstReadOf.get(op.value);
      if (firstRead === undefined) continue;
      kept.push({ op, completeAt: firstRead >= op.invoke ? firstRead : Infinity });
    } else if (lastAbsentRead >= op.invoke) {
      // An unknown delete is observable only by an "absent" read that may come after it.
      kept.push({ op, completeAt: Infinity });
    }
  }
  kept.sort((a, b) => a.op.invoke - b.op.invoke || a.op.id - b.op.id);

  const n = kept.length;
  const ids = new Map<string, number>();
  for (const { op } of kept) {
    if (op.kind === 'read' && op.value !== null && !ids.has(op.value)) {
      ids.set(op.value, unreadValueId + 1 + ids.size);
    }
  }
  const completeAt = new Float64Array(n);
  const isWrite = new Uint8Array(n);
  const valueId = new Int32Array(n);
  const readers = new Int32Array(unreadValueId + 1 + ids.size);
  for (let i = 0; i < n; i++) {
    const { op } = kept[i];
    completeAt[i] = kept[i].completeAt;
    isWrite[i] = op.kind === 'write' ? 1 : 0;
    valueId[i] = op.value === null ? absentValueId : (ids.get(op.value) ?? unreadValueId);
    if (op.kind === 'read') readers[valueId[i]]++;
  }
  return { key, ops: kept.map((k) => k.op), completeAt, isWrite, valueId, readers };
}

// ---------------------------------------------------------------------------------------------
// The search.

type SearchOutcome =
  | { kind: 'ok'; steps: number }
  | { kind: 'unknown'; steps: number; reason: string }
  | {
      kind: 'violation';
      steps: number;
      /** The longest linearizable prefix found, as operation indices in linearization order. */
      prefix: number[];
      /** The operation whose return the search could not get past from that prefix. */
      failedOp: number;
    };

/** One linearized operation; the frames form a persistent stack, so keeping the best is O(1). */
interface Frame {
  readonly op: number;
  readonly callNode: number;
  readonly stateBefore: number;
  readonly parent: Frame | null;
  readonly depth: number;
}

const none = -1;

function search(
  problem: KeyProblem,
  limits: { stepsMax: number; cacheBytesMax: number },
): SearchOutcome {
  const n = problem.ops.length;
  const { completeAt, isWrite, valueId } = problem;

  // Nodes 0..2n-1 are the events in time order; node 2n is the list head.
  const head = 2 * n;
  const order = new Int32Array(2 * n);
  for (let i = 0; i < 2 * n; i++) order[i] = i;
  // Event e < n is the call of operation e; event e >= n is the return of operation e - n. The
  // operations are already sorted by (invoke, id), so the index breaks remaining ties.
  const eventTime = (e: number): number => (e < n ? problem.ops[e].invoke : completeAt[e - n]);
  order.sort((a, b) => {
    const ta = eventTime(a);
    const tb = eventTime(b);
    if (ta !== tb) return ta < tb ? -1 : 1; // no subtraction: Infinity - Infinity is NaN
    const aIsCall = a < n;
    if (aIsCall !== b < n) return aIsCall ? -1 : 1; // the tie rule: calls first
    return a - b;
  });
  const nodeOp = new Int32Array(2 * n);
  const nodeIsCall = new Uint8Array(2 * n);
  const callNode = new Int32Array(n);
  const returnNode = new Int32Array(n);
  for (let node = 0; node < 2 * n; node++) {
    const e = order[node];
    if (e < n) {
      nodeOp[node] = e;
      nodeIsCall[node] = 1;
      callNode[e] = node;
    } else {
      nodeOp[node] = e - n;
      returnNode[e - n] = node;
    }
  }
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  for (let node = 0; node < 2 * n; node++) {
    next[node] = node + 1 < 2 * n ? node + 1 : none;
    prev[node] = node === 0 ? head : node - 1;
  }
  next[head] = n > 0 ? 0 : none;
  prev[head] = none;

  // Lifting a call takes its return out too; unlifting restores both in reverse (dancing links),
  // which is exact because the search undoes lifts in LIFO order.
  const lift = (call: number): void => {
    const ret = returnNode[nodeOp[call]];
    next[prev[call]] = next[call];
    prev[next[call]] = prev[call]; // a call always has its return after it
    next[prev[ret]] = next[ret];
    if (next[ret] !== none) prev[next[ret]] = prev[ret];
  };
  const unlift = (call: number): void => {
    const ret = returnNode[nodeOp[call]];
    if (next[ret] !== none) prev[next[ret]] = ret;
    next[prev[ret]] = ret;
    prev[next[call]] = call;
    next[prev[call]] = call;
  };

  // The linearized set as a bitset, with a Zobrist hash kept up to date in O(1) per change.
  const bits = new Uint32Array(Math.max(1, Math.ceil(n / 32)));
  const zobristLow = new Int32Array(n);
  const zobristHigh = new Int32Array(n);
  const random = splitMix32(0x5eed);
  for (let i = 0; i < n; i++) {
    zobristLow[i] = random();
    zobristHigh[i] = random();
  }
  let hashLow = 0;
  let hashHigh = 0;
  const cache = new ExploredStates(bits.length);

  // A level is one node of the search tree: the candidates that may be linearized next (every
  // pending call before the first return left in the list) and how many have been tried.
  interface Level {
    readonly candidates: Int32Array;
    tried: number;
    /** The operation whose return ends the candidates; if none of them works, it never will. */
    readonly firstReturnOp: number;
  }
  const openLevel = (): Level => {
    const found: number[] = [];
    let node = next[head];
    while (nodeIsCall[node] === 1) {
      found.push(nodeOp[node]);
      node = next[node];
    }
    // Earliest deadline first. The order of trying candidates does not change the answer (all are
    // tried before backtracking), only how soon it comes: a write that may take effect late (an
    // unknown outcome bounded by the read that saw it) is tried as late as possible, which is where
    // it almost always belongs; tried first, as in call order, it would be wrong at every point in
    // between, and the search would visit each of them.
    const candidates = Int32Array.from(found).sort((a, b) =>
      completeAt[a] !== completeAt[b] ? (completeAt[a] < completeAt[b] ? -1 : 1) : a - b,
    );
    return { candidates, tried: 0, firstReturnOp: nodeOp[node] };
  };

  let state: number = absentValueId;
  // What is not yet linearized, for the pruning in writeResult: reads per value; "absent" reads by
  // completion time; deletes by invoke time (the operations' own order).
  const readersLeft = problem.readers.slice();
  const absentReaders: number[] = [];
  const deletes: number[] = [];
  for (let op = 0; op < n; op++) {
    if (valueId[op] !== absentValueId) continue;
    (isWrite[op] === 1 ? deletes : absentReaders).push(op);
  }
  absentReaders.sort((a, b) =>
    completeAt[a] !== completeAt[b] ? (completeAt[a] < completeAt[b] ? -1 : 1) : a - b,
  );
  const absentReadersLeft = new FirstAlive(absentReaders);
  const deletesLeft = new FirstAlive(deletes);
  const count = (op: number, delta: number): void => {
    if (isWrite[op] === 0) readersLeft[valueId[op]] += delta;
    if (valueId[op] !== absentValueId) return;
    const left = isWrite[op] === 1 ? deletesLeft : absentReadersLeft;
    if (delta < 0) left.remove(op);
    else left.restore(op);
  };
  // Overwriting a value that some read still has to return is a dead end, because values are
  // unique: nothing can write it again. Cutting that branch at once, instead of when the read's
  // return is reached, is what keeps highly concurrent histories tractable. "Absent" can come back,
  // so it may be overwritten while a delete invoked before the next "absent" read's deadline is
  // still to be placed.
  const writeResult = (op: number): number => {
    const value = valueId[op];
    if (readersLeft[state] === 0) return value;
    if (state !== absentValueId) return none;
    if (value === absentValueId) return value;
    const reader = absentReadersLeft.first();
    const remedy = deletesLeft.first();
    if (remedy !== none && problem.ops[remedy].invoke <= completeAt[reader]) return value;
    return none;
  };

  if (n === 0) return { kind: 'ok', steps: 0 };
  const levels: Level[] = [];
  let level = openLevel();
  let top = null as Frame | null;
  let best: { depth: number; top: Frame | null; failedOp: number } | null = null;
  let steps = 0;
  for (;;) {
    if (level.tried < level.candidates.length) {
      if (steps >= limits.stepsMax) {
        return {
          kind: 'unknown',
          steps,
          reason: `search budget of ${limits.stepsMax} steps spent`,
        };
      }
      steps++;
      const op = level.candidates[level.tried++];
      const after = isWrite[op] === 1 ? writeResult(op) : valueId[op] === state ? state : none;
      if (after === none) continue;
      bits[op >>> 5] |= 1 << (op & 31);
      hashLow ^= zobristLow[op];
      hashHigh ^= zobristHigh[op];
      if (!cache.addIfAbsent(bits, hashLow, hashHigh, after)) {
        bits[op >>> 5] &= ~(1 << (op & 31));
        hashLow ^= zobristLow[op];
        hashHigh ^= zobristHigh[op];
        continue;
      }
      if (cache.bytes > limits.cacheBytesMax) {
        return {
          kind: 'unknown',
          steps,
          reason: `cache of explored states passed ${limits.cacheBytesMax} bytes`,
        };
      }
      const parent: Frame | null = top;
      const depth: number = parent === null ? 1 : parent.depth + 1;
      top = { op, callNode: callNode[op], stateBefore: state, parent, depth };
      state = after;
      count(op, -1);
      lift(callNode[op]);
      if (next[head] === none) return { kind: 'ok', steps };
      levels.push(level);
      level = openLevel();
      continue;
    }
    // Every candidate was tried from this prefix, so it is a dead end: firstReturnOp had to be
    // linearized by now and cannot be.
    const depth = top?.depth ?? 0;
    if (best === null || depth > best.depth) {
      best = { depth, top, failedOp: level.firstReturnOp };
    }
    const undone: Frame | null = top;
    const parentLevel = levels.pop();
    if (undone === null || parentLevel === undefined) {
      return {
        kind: 'violation',
        steps,
        ...prefixOf(best.top),
        failedOp: best.failedOp,
      };
    }
    top = undone.parent;
    state = undone.stateBefore;
    count(undone.op, +1);
    bits[undone.op >>> 5] &= ~(1 << (undone.op & 31));
    hashLow ^= zobristLow[undone.op];
    hashHigh ^= zobristHigh[undone.op];
    unlift(undone.callNode);
    level = parentLevel;
  }
}

function prefixOf(top: Frame | null): { prefix: number[] } {
  const prefix: number[] = [];
  for (let frame = top; frame !== null; frame = frame.parent) prefix.push(frame.op);
  return { prefix: prefix.reverse() };
}

/**
 * A fixed list of operations, some removed, answering "which is the first one left?" in O(log n)
 * through a tree of counts, because the search asks on every write it tries in the absent state.
 */
class FirstAlive {
  private readonly ops: readonly number[];
  private readonly position = new Map<number, number>();
  private readonly leaves: number;
  private readonly alive: Int32Array;

  constructor(ops: readonly number[]) {
    this.ops = ops;
    ops.forEach((op, index) => this.position.set(op, index));
    let leaves = 1;
    while (leaves < ops.length) leaves *= 2;
    this.leaves = leaves;
    this.alive = new Int32Array(2 * leaves);
    for (let index = 0; index < ops.length; index++) this.alive[leaves + index] = 1;
    for (let node = leaves - 1; node >= 1; node--) {
      this.alive[node] = this.alive[2 * node] + this.alive[2 * node + 1];
    }
  }

  remove(op: number): void {
    this.update(op, -1);
  }

  restore(op: number): void {
    this.update(op, +1);
  }

  /** The first operation left, or -1 when all are removed. */
  first(): number {
    if (this.alive[1] === 0) return none;
    let node = 1;
    while (node < this.leaves) node = this.alive[2 * node] > 0 ? 2 * node : 2 * node + 1;
    return this.ops[node - this.leaves];
  }

  private update(op: number, delta: number): void {
    const index = this.position.get(op);
    if (index === undefined) throw new Error(`operation ${op} is not tracked`);
    for (let node = this.leaves + index; node >= 1; node >>= 1) this.alive[node] += delta;
  }
}

/**
 * The (linearized set, register value) pairs already explored. Bitsets live in one growing arena
 * rather than one typed array each (a typed array costs ~100 bytes of header), and a hit is
 * confirmed by comparing the bitset, so a hash collision can never prune a live branch.
 */
class ExploredStates {
  bytes = 0;
  private readonly words: number;
  private readonly heads = new Map<number, number>();
  private arena: Uint32Array;
  private states: Int32Array;
  private chain: Int32Array;
  private count = 0;

  constructor(words: number) {
    this.words = words;
    const capacity = 1024;
    this.arena = new Uint32Array(capacity * words);
    this.states = new Int32Array(capacity);
    this.chain = new Int32Array(capacity);
  }

  /** Records the pair and returns true, or returns false when it was already there. */
  addIfAbsent(bits: Uint32Array, hashLow: number, hashHigh: number, state: number): boolean {
    // 53 bits of hash: 32 from one Zobrist word mixed with the state, 21 from the other.
    const key =
      ((hashLow ^ Math.imul(state + 1, 0x9e3779b1)) >>> 0) + (hashHigh & 0x1fffff) * 0x100000000;
    const first = this.heads.get(key);
    for (let entry = first ?? none; entry !== none; entry = this.chain[entry]) {
      if (this.states[entry] === state && this.sameBits(entry, bits)) return false;
    }
    if (this.count === this.states.length) this.grow();
    const entry = this.count++;
    this.arena.set(bits, entry * this.words);
    this.states[entry] = state;
    this.chain[entry] = first ?? none;
    this.heads.set(key, entry);
    // The arena's words, the two per-entry integers, and roughly what a Map entry costs.
    this.bytes += this.words * 4 + 8 + 40;
    return true;
  }

  private sameBits(entry: number, bits: Uint32Array): boolean {
    const offset = entry * this.words;
    for (let i = 0; i < this.words; i++) {
      if (this.arena[offset + i] !== bits[i]) return false;
    }
    return true;
  }

  private grow(): void {
    const capacity = this.states.length * 2;
    const arena = new Uint32Array(capacity * this.words);
    arena.set(this.arena);
    this.arena = arena;
    const states = new Int32Array(capacity);
    states.set(this.states);
    this.states = states;
    const chain = new Int32Array(capacity);
    chain.set(this.chain);
    this.chain = chain;
  }
}

/** A tiny deterministic PRNG for the Zobrist keys; the checker must not depend on Math.random. */
function splitMix32(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return z ^ (z >>> 16);
  };
}

// ---------------------------------------------------------------------------------------------
// Real-time proofs: anomalies that need no search, found in O(n log n) before it. They catch the
// usual bugs (stale reads, lost writes, reads going back in time, values nobody wrote) even where
// the search would drown in concurrency, and they explain them in terms of four operations.

/** When a write had surely taken effect, and the evidence for it. */
interface Visibility {
  readonly at: number;
  /** The read that saw the value first, when that is earlier than the write's own completion. */
  readonly seenBy: Operation | null;
}

interface KeyFacts {
  readonly writerOf: Map<string, Operation>;
  readonly firstReadOf: Map<string, Operation>;
  readonly writes: readonly Operation[];
  readonly hasDeletes: boolean;
  readonly overwrites: OverwriteIndex;
}

/**
 * Answers "was the value of `write`, surely visible by `visibleAt`, surely overwritten by another
 * write before `time`?" in O(log n): is there a write invoked after `visibleAt` that had surely
 * taken effect before `time`? Writes are sorted by invoke time with suffix minima of when they had
 * surely taken effect; the runner-up (another write) serves queries that must exclude `write`.
 */
class OverwriteIndex {
  private readonly invokes: Float64Array;
  private readonly index = new Map<Operation, number>();
  private readonly minAt: Float64Array;
  private readonly minIndex: Int32Array;
  private readonly secondAt: Float64Array;

  constructor(writes: readonly Operation[], visibleAt: (write: Operation) => number) {
    const sorted = [...writes].sort((a, b) => a.invoke - b.invoke || a.id - b.id);
    const m = sorted.length;
    this.invokes = Float64Array.from(sorted, (write) => write.invoke);
    sorted.forEach((write, i) => this.index.set(write, i));
    this.minAt = new Float64Array(m + 1).fill(Infinity);
    this.minIndex = new Int32Array(m + 1).fill(none);
    this.secondAt = new Float64Array(m + 1).fill(Infinity);
    for (let i = m - 1; i >= 0; i--) {
      const at = visibleAt(sorted[i]);
      if (at < this.minAt[i + 1]) {
        this.minAt[i] = at;
        this.minIndex[i] = i;
        this.secondAt[i] = this.minAt[i + 1];
      } else {
        this.minAt[i] = this.minAt[i + 1];
        this.minIndex[i] = this.minIndex[i + 1];
        this.secondAt[i] = Math.min(this.secondAt[i + 1], at);
      }
    }
  }

  before(write: Operation | null, visibleAt: number, time: number): boolean {
    let low = 0;
    let high = this.invokes.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.invokes[mid] > visibleAt) high = mid;
      else low = mid + 1;
    }
    const own = write === null ? none : (this.index.get(write) ?? none);
    const overwrittenAt = this.minIndex[low] === own ? this.secondAt[low] : this.minAt[low];
    return overwrittenAt < time;
  }
}

function keyFacts(ops: readonly Operation[]): KeyFacts {
  const writerOf = new Map<string, Operation>();
  const firstReadOf = new Map<string, Operation>();
  const writes: Operation[] = [];
  let hasDeletes = false;
  for (const op of ops) {
    if (op.kind === 'write') {
      writes.push(op);
      if (op.value === null) hasDeletes = true;
      else writerOf.set(op.value, op);
    } else if (hasKnownOutcome(op) && op.value !== null) {
      const seen = firstReadOf.get(op.value);
      if (seen === undefined || (seen.complete ?? Infinity) > op.complete) {
        firstReadOf.set(op.value, op);
      }
    }
  }
  const partial = { writerOf, firstReadOf, writes, hasDeletes };
  const overwrites = new OverwriteIndex(writes, (write) => visibility(partial, write).at);
  return { ...partial, overwrites };
}

function visibility(facts: Pick<KeyFacts, 'firstReadOf'>, write: Operation): Visibility {
  const own = hasKnownOutcome(write) ? write.complete : Infinity;
  const read = write.value === null ? undefined : facts.firstReadOf.get(write.value);
  if (read !== undefined && read.complete !== null && read.complete < own) {
    return { at: read.complete, seenBy: read };
  }
  return { at: own, seenBy: null };
}

interface Proof {
  readonly read: Operation;
  readonly text: string;
  /** The operations the text names. */
  readonly involved: readonly Operation[];
}

/**
 * Where a read's value came from: its write and when that write had surely taken effect, or, for
 * "absent" on a key never deleted, the initial state (visible since -Infinity). A string is an
 * anomaly of the value itself; null means "absent" with deletes about, which needs the search.
 */
type ReadSource = { write: Operation | null; visibleAt: number } | Proof | null;

function sourceOf(facts: KeyFacts, read: Operation & { complete: number }): ReadSource {
  const readWhat = `Read ${describe(read)} returned ${formatValue(read.value)}`;
  if (read.value === null) {
    // Several deletes could explain an "absent"; telling which is the search's job.
    return facts.hasDeletes ? null : { write: null, visibleAt: -Infinity };
  }
  const writer = facts.writerOf.get(read.value);
  if (writer === undefined) {
    const text =
      `${readWhat}, but no operation in the history wrote ${formatValue(read.value)} to this key ` +
      `(not even one with an unknown outcome). Either the store returned a value nobody wrote ` +
      `(corruption, or a value of another key), or a write was recorded as a definite failure ` +
      `although it took effect.`;
    return { read, text, involved: [] };
  }
  if (writer.invoke > read.complete) {
    const text =
      `${readWhat}, a value from the future: its write ${describe(writer)} was invoked only ` +
      `after the read had completed.`;
    return { read, text, involved: [writer] };
  }
  return { write: writer, visibleAt: visibility(facts, writer).at };
}

/**
 * Every known read that real time alone proves wrong: its value was never written, or written only
 * after the read, or overwritten before the read began, meaning another write was invoked after the
 * value had surely taken effect and had itself surely taken effect before the read was invoked.
 * Returns the first such read (by invoke time) with its proof, and how many there are.
 */
function findProvenStaleRead(
  facts: KeyFacts,
  ops: readonly Operation[],
): { proof: Proof; count: number } | null {
  let first: Operation | null = null;
  let count = 0;
  for (const read of ops) {
    if (read.kind !== 'read' || !hasKnownOutcome(read)) continue;
    const source = sourceOf(facts, read);
    if (source === null) continue;
    if (!('text' in source)) {
      if (!facts.overwrites.before(source.write, source.visibleAt, read.invoke)) continue;
    }
    count++;
    if (first === null || read.invoke < first.invoke) first = read;
  }
  if (first === null) return null;
  const proof = proveStale(facts, first);
  if (proof === null) throw new Error(`read #${first.id}: the fast check and the proof disagree`);
  return { proof, count };
}

/** The proof for one read, naming the overwrite closest to the read (the one to look at first). */
function proveStale(facts: KeyFacts, read: Operation): Proof | null {
  if (!hasKnownOutcome(read)) return null;
  const source = sourceOf(facts, read);
  if (source === null || 'text' in source) return source;
  let overwrite: { write: Operation; visible: Visibility } | null = null;
  for (const write of facts.writes) {
    if (write === source.write || !(write.invoke > source.visibleAt)) continue;
    const visible = visibility(facts, write);
    if (!(visible.at < read.invoke)) continue;
    if (overwrite === null || visible.at > overwrite.visible.at) overwrite = { write, visible };
  }
  if (overwrite === null) return null;
  const { write, visible } = overwrite;

  const sourceSeenBy = source.write === null ? null : visibility(facts, source.write).seenBy;
  const sourceText =
    source.write === null
      ? `The key starts absent and no delete of it appears in the history`
      : `${formatValue(read.value)} was written by ${describe(source.write)}` +
        (sourceSeenBy !== null ? ` and seen by ${describe(sourceSeenBy)}` : '');
  const evidence =
    visible.seenBy !== null
      ? `read ${describe(visible.seenBy)} had already returned ${formatValue(write.value)} ` +
        `(so the register went back in time)`
      : `it had completed`;
  let text =
    `Read ${describe(read)} returned ${formatValue(read.value)}, a stale value. ${sourceText}. ` +
    `Then ${describe(write)} was invoked at ${formatTime(write.invoke)}, after that, and by ` +
    `${formatTime(visible.at)} ${evidence}, before this read was invoked at ` +
    `${formatTime(read.invoke)}. So ${formatValue(read.value)} had been overwritten before the ` +
    `read began.`;
  if (write.value !== null && !facts.firstReadOf.has(write.value)) {
    text +=
      ` No read ever returned ${formatValue(write.value)}: if the store acknowledged ` +
      `${describe(write, false)} without applying it, or lost it in a failover, this is a lost write.`;
  } else if (write.value === null) {
    text += ` The acknowledged delete was not visible to this read.`;
  }
  const involved = [source.write, sourceSeenBy, write, visible.seenBy].filter(
    (op): op is Operation => op !== null,
  );
  return { read, text, involved };
}

/** A violation proven from real time: no linearized prefix, the read is the one unplaced. */
function provenViolation(
  key: string,
  facts: KeyFacts,
  keyOps: readonly Operation[],
  proven: { proof: Proof; count: number },
): Violation {
  const { proof, count } = proven;
  const { read } = proof;
  const readComplete = read.complete ?? Infinity;
  // What the read could have returned, by real time alone: values of writes surely before it and
  // not surely overwritten before it began (or the initial absence, if no write was surely
  // before it), and values of the writes concurrent with it.
  const possibleValues: PossibleValue[] = [];
  let someWriteBefore = false;
  for (const op of keyOps) {
    if (op.kind !== 'write' || op.invoke > readComplete) continue;
    const { at } = visibility(facts, op);
    if (at < read.invoke) {
      someWriteBefore = true;
      if (!facts.overwrites.before(op, at, read.invoke)) {
        possibleValues.push({ value: op.value, writer: op, current: true });
      }
    } else {
      possibleValues.push({ value: op.value, writer: op, current: false });
    }
  }
  if (!someWriteBefore) possibleValues.unshift({ value: null, writer: null, current: true });
  possibleValues.sort((a, b) => Number(b.current) - Number(a.current));
  const others =
    count > 1
      ? `\n${count - 1} other read(s) of this key are provably wrong as well; this is the first.`
      : '';
  const explanation =
    `${proof.text}${others}\nThis follows from real time alone (no order of the operations can ` +
    `fix it). Values the read could have returned: ${formatPossible(possibleValues)}.`;
  const possibleWriters = possibleValues.flatMap((p) => (p.writer === null ? [] : [p.writer]));
  const operations = [...new Set([...proof.involved, ...possibleWriters])]
    .filter((op) => op !== read)
    .sort((a, b) => a.invoke - b.invoke || a.id - b.id);
  return {
    key,
    explanation,
    operations: [...operations, read],
    failedOperation: read,
    linearizedCount: 0,
    linearizedTail: [],
    unplaced: [read],
    possibleValues,
  };
}

// ---------------------------------------------------------------------------------------------
// Explaining a violation the search found.

function describeViolation(
  problem: KeyProblem,
  outcome: Extract<SearchOutcome, { kind: 'violation' }>,
): Violation {
  const { ops } = problem;
  const failedOperation = ops[outcome.failedOp];
  const failedCompleteAt = problem.completeAt[outcome.failedOp];
  const linearized = new Set(outcome.prefix);
  const unplaced = ops.filter((op, i) => !linearized.has(i) && op.invoke <= failedCompleteAt);

  let currentWriter: Operation | null = null;
  for (let p = outcome.prefix.length - 1; p >= 0 && currentWriter === null; p--) {
    if (problem.isWrite[outcome.prefix[p]] === 1) currentWriter = ops[outcome.prefix[p]];
  }
  const currentValue = currentWriter === null ? null : currentWriter.value;
  const possibleValues: PossibleValue[] = [
    { value: currentValue, writer: currentWriter, current: true },
    ...unplaced
      .filter((op) => op.kind === 'write')
      .map((op) => ({ value: op.value, writer: op, current: false })),
  ];
  const possibleText = formatPossible(possibleValues);

  // Reads of the current value not yet placed: a write cannot overwrite that value before them.
  // The latest-invoked come first, since a read far from the write it saw is the likely culprit.
  const waitingReaders = ops
    .filter((op, i) => op.kind === 'read' && op.value === currentValue && !linearized.has(i))
    .sort((a, b) => b.invoke - a.invoke || b.id - a.id);
  const shownReaders = waitingReaders.slice(0, 3);
  const readersText =
    shownReaders.map((op) => `#${op.id} invoked at ${formatTime(op.invoke)}`).join(', ') +
    (waitingReaders.length > shownReaders.length
      ? ` and ${waitingReaders.length - shownReaders.length} more`
      : '');
  const blocked =
    waitingReaders.length === 0
      ? null
      : `reads of ${formatValue(currentValue)} (${readersText}) are still to come, and ` +
        (currentValue === null
          ? `no pending delete could make the key absent again in time`
          : `once overwritten that value can never be read again`);
  const deadEnd =
    `every order of the ${unplaced.length} operations concurrent with it leads to a state ` +
    `already shown to be a dead end; look at the reads among them`;
  const source = unplaced.find(
    (op) => op.kind === 'write' && op.value !== null && op.value === failedOperation.value,
  );
  let whyNot: string;
  if (failedOperation.kind === 'read' && source === undefined) {
    whyNot = failedOperation.value === currentValue ? deadEnd : `nothing could have written it`;
  } else if (failedOperation.kind === 'read' && source !== undefined) {
    whyNot =
      blocked === null
        ? deadEnd
        : `its value comes from the concurrent ${describe(source, false)}, which cannot take ` +
          `effect yet: ${blocked}`;
  } else {
    whyNot =
      blocked === null
        ? deadEnd
        : `it had to take effect by ${formatTime(failedCompleteAt)}, but ${blocked}`;
  }
  whyNot += `. Values possible at that point: ${possibleText}.`;
  const explanation =
    `No order of the operations on this key is consistent. The longest linearizable prefix found ` +
    `holds ${outcome.prefix.length} of ${ops.length} operations; after it the register holds ` +
    `${formatValue(currentValue)}` +
    (currentWriter === null ? ' (initial)' : ` (written by ${describe(currentWriter, false)})`) +
    `, and ${describe(failedOperation)} cannot be placed: ${whyNot}`;

  // The window: the end of the prefix (what overlaps the unplaced operations), the unplaced
  // operations, and whatever else the explanation names.
  let windowStart = Infinity;
  for (const op of unplaced) windowStart = Math.min(windowStart, op.invoke);
  const named = new Set<Operation>([failedOperation, ...shownReaders]);
  if (currentWriter !== null) named.add(currentWriter);
  const overlapping = outcome.prefix
    .filter((i) => problem.completeAt[i] >= windowStart || named.has(ops[i]))
    .map((i) => ops[i]);
  const linearizedTail = overlapping.filter(
    (op, p) => p >= overlapping.length - windowTailOperationsMax || named.has(op),
  );
  const shown = new Set<Operation>([...linearizedTail, ...unplaced]);
  const context = [...named]
    .filter((op) => !shown.has(op))
    .sort((a, b) => a.invoke - b.invoke || a.id - b.id);
  return {
    key: problem.key,
    explanation,
    operations: [...linearizedTail, ...unplaced, ...context],
    failedOperation,
    linearizedCount: outcome.prefix.length,
    linearizedTail,
    unplaced,
    possibleValues,
  };
}

// ---------------------------------------------------------------------------------------------
// Text.

function formatPossible(values: readonly PossibleValue[]): string {
  return values
    .map(({ value, writer, current }) => {
      if (writer === null) return `${formatValue(value)} (initial)`;
      const source = `#${writer.id} by client ${writer.client}`;
      return `${formatValue(value)} (${current ? 'current' : 'concurrent'}, from ${source})`;
    })
    .join(', ');
}

function formatValue(value: string | null): string {
  return value === null ? 'absent' : JSON.stringify(value);
}

function formatTime(time: number): string {
  return Number.isInteger(time) ? String(time) : time.toFixed(3);
}

function formatInterval(op: Operation): string {
  const end = hasKnownOutcome(op) ? formatTime(op.complete) : '?';
  return `[${formatTime(op.invoke)}, ${end}]`;
}

function describeAction(op: Operation): string {
  if (op.kind === 'read') return `read ${formatValue(op.value)}`;
  return op.value === null ? 'delete' : `write ${formatValue(op.value)}`;
}

/** "#12 (client 3, write "v", [100, 130])"; the interval is left out where the text has it. */
function describe(op: Operation, withInterval = true): string {
  const outcome = hasKnownOutcome(op) ? '' : ', outcome unknown';
  const interval = withInterval ? `, ${formatInterval(op)}` : '';
  return `#${op.id} (client ${op.client}, ${describeAction(op)}${interval}${outcome})`;
}

/** A report for people: a summary line, then each violation with its window of operations. */
export function formatReport(result: CheckResult): string {
  const count = (kind: KeyResultKind): number =>
    result.perKey.filter((k) => k.result === kind).length;
  const steps = result.perKey.reduce((sum, k) => sum + k.steps, 0);
  const lines = [
    `linearizability: ${result.result.toUpperCase()}: ${result.keys} keys, ` +
      `${result.operations} operations; ${count('ok')} keys ok, ${count('violation')} violated, ` +
      `${count('unknown')} undecided; ${steps} search steps`,
  ];
  for (const k of result.perKey) {
    if (k.result === 'unknown') {
      lines.push(
        `key ${JSON.stringify(k.key)}: undecided after ${k.steps} steps (${k.reason ?? 'budget'}); ` +
          `raise the budget or shorten the run`,
      );
    }
  }
  for (const v of result.violations) {
    lines.push('', `key ${JSON.stringify(v.key)}: NOT LINEARIZABLE`);
    for (const line of v.explanation.split('\n')) lines.push(`  ${line}`);
    const hidden = v.linearizedCount - v.linearizedTail.length;
    lines.push(
      v.linearizedCount === 0
        ? `  Operations involved:`
        : `  Operations around the failure (linearized ones in linearization order` +
            (hidden > 0 ? `, ${hidden} earlier ones not shown` : '') +
            `; then the ones that could not be placed, by invoke time):`,
    );
    const linearized = new Set(v.linearizedTail);
    const unplaced = new Set(v.unplaced);
    const rows = v.operations.map((op) => {
      const mark = op === v.failedOperation ? '>>' : '  ';
      const status = linearized.has(op) ? 'linearized' : unplaced.has(op) ? 'unplaced' : 'context';
      const outcome = hasKnownOutcome(op) ? '' : ' (outcome unknown)';
      return (
        `${mark} ${status.padEnd(10)} #${op.id}  client ${op.client}  ` +
        `${describeAction(op)}  ${formatInterval(op)}${outcome}`
      );
    });
    lines.push(...rows.map((row) => `  ${row}`));
  }
  return `${lines.join('\n')}\n`;
}
