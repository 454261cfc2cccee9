// The history of a fault-tolerance (Jepsen-style) run: what each client asked for, when, and what it
// saw. The chaos runner records it while nemeses break the cluster, saves it to ./chaos-results/ as
// JSON lines, and the linearizability checker (linearizability.ts) decides whether it is legal.
//
// Three outcomes of a client operation, and how each one enters the history:
//
// - Success (`ok: true`, `complete` = when the reply arrived): the operation took effect exactly
//   once, somewhere between `invoke` and `complete`.
// - Definite failure (the server refused before applying anything: not leader, wrong group, bad
//   request): the operation never took effect, so it constrains nothing. The recorder drops it; it
//   is not part of the history at all.
// - Unknown outcome (timeout, connection lost, leader lost after proposing; `ok: false`): the
//   operation may have taken effect at any time after `invoke`, or never. Its `complete` is null
//   (or, for information only, the time the client gave up: the checker ignores it). The checker
//   drops an unknown read, which imposes nothing, and treats an unknown write as pending forever
//   (completion at +infinity), which is porcupine's approach. Counting a timeout as a failure would
//   turn a slow-but-applied write into a false violation, so a timeout is never a failure.
//
// Timestamps come from one monotonic clock shared by every client of a run (performance.now() or
// process.hrtime in the runner's process); the unit (ms or ns) is the recorder's choice, but it must
// be the same for the whole history. Wall clocks are unusable: a step backwards would invent a
// violation.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export type OperationKind = 'read' | 'write';

/** One operation on one key. */
export interface Operation {
  /** Unique within the history; the checker's reports refer to operations by it. */
  readonly id: number;
  /** The client (logical process) that issued the operation; a client runs one operation at a time. */
  readonly client: number;
  readonly kind: OperationKind;
  readonly key: string;
  /**
   * For a write, the value written, unique per key across the whole history (so that a read names
   * the one write it saw); null is a delete. For a read, the value observed; null is "absent".
   */
  readonly value: string | null;
  /** When the client sent the request. */
  readonly invoke: number;
  /** When the client received the reply; null when the outcome is unknown. */
  readonly complete: number | null;
  /** True when the reply confirmed success; false when the outcome is unknown (see above). */
  readonly ok: boolean;
}

/** True when the operation's reply was received, so it took effect inside [invoke, complete]. */
export function hasKnownOutcome(op: Operation): op is Operation & { readonly complete: number } {
  return op.ok && op.complete !== null;
}

/** A history that breaks the recorder's contract; this is a recorder bug, not a cluster bug. */
export class InvalidHistoryError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(
      `invalid history: ${problems.slice(0, 10).join('; ')}` +
        (problems.length > 10 ? `; and ${problems.length - 10} more` : ''),
    );
    this.name = 'InvalidHistoryError';
  }
}

/** Every contract violation in a history (an empty array for a valid one). */
export function historyProblems(history: readonly Operation[]): string[] {
  const problems: string[] = [];
  const ids = new Set<number>();
  // Unique written values are what lets a read name the write it saw; the checker relies on it.
  const writerOfValue = new Map<string, number>();
  for (const op of history) {
    const where = `operation #${op.id}`;
    if (!Number.isSafeInteger(op.id)) problems.push(`${where}: id is not an integer`);
    if (ids.has(op.id)) problems.push(`${where}: duplicate id`);
    ids.add(op.id);
    if (!Number.isFinite(op.invoke)) problems.push(`${where}: invoke is not a finite number`);
    if (op.complete !== null) {
      if (!Number.isFinite(op.complete)) problems.push(`${where}: complete is not finite`);
      else if (op.complete < op.invoke) problems.push(`${where}: completes before it is invoked`);
    }
    if (op.ok && op.complete === null) {
      problems.push(`${where}: ok but without a completion time`);
    }
    if (op.kind === 'write' && op.value !== null) {
      const valueKey = `${op.key}\u0000${op.value}`;
      const other = writerOfValue.get(valueKey);
      if (other !== undefined) {
        problems.push(`${where}: writes ${JSON.stringify(op.value)}, already written by #${other}`);
      } else {
        writerOfValue.set(valueKey, op.id);
      }
    }
  }
  return problems;
}

/** Throws InvalidHistoryError unless the history keeps the recorder's contract. */
export function assertValidHistory(history: readonly Operation[]): void {
  const problems = historyProblems(history);
  if (problems.length > 0) throw new InvalidHistoryError(problems);
}

/**
 * Splits a multi-key history into one history per key, each in the original order. Keys are
 * independent registers, and linearizability is compositional (Herlihy & Wing's locality), so each
 * per-key history can be checked on its own, which keeps the search small.
 */
export function splitHistoryByKey(history: readonly Operation[]): Map<string, Operation[]> {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    const ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, [op]);
    else ops.push(op);
  }
  return byKey;
}

/** One JSON object per line, fields in a fixed order, so that saved histories diff cleanly. */
export function serializeHistory(history: readonly Operation[]): string {
  let text = '';
  for (const op of history) {
    const line: Operation = {
      id: op.id,
      client: op.client,
      kind: op.kind,
      key: op.key,
      value: op.value,
      invoke: op.invoke,
      complete: op.complete,
      ok: op.ok,
    };
    text += `${JSON.stringify(line)}\n`;
  }
  return text;
}

/** Parses what serializeHistory wrote; blank lines are ignored, anything malformed throws. */
export function parseHistory(text: string): Operation[] {
  const history: Operation[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index].trim();
    if (line === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (err) {
      throw new Error(`history line ${index + 1}: not JSON (${String(err)})`);
    }
    history.push(operationFromJson(parsed, index + 1));
  }
  return history;
}

function operationFromJson(parsed: unknown, lineNumber: number): Operation {
  const fail = (what: string): never => {
    throw new Error(`history line ${lineNumber}: ${what}`);
  };
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return fail('not a JSON object');
  }
  const record = parsed as Record<string, unknown>;
  const { id, client, kind, key, value, invoke, complete, ok } = record;
  if (typeof id !== 'number') return fail('id must be a number');
  if (typeof client !== 'number') return fail('client must be a number');
  if (kind !== 'read' && kind !== 'write') return fail("kind must be 'read' or 'write'");
  if (typeof key !== 'string') return fail('key must be a string');
  if (value !== null && typeof value !== 'string') return fail('value must be a string or null');
  if (typeof invoke !== 'number') return fail('invoke must be a number');
  if (complete !== null && typeof complete !== 'number') {
    return fail('complete must be a number or null');
  }
  if (typeof ok !== 'boolean') return fail('ok must be a boolean');
  return { id, client, kind, key, value, invoke, complete, ok };
}

/** Writes a history as JSON lines, creating the directory (e.g. ./chaos-results/<run>/) first. */
export async function saveHistory(path: string, history: readonly Operation[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, serializeHistory(history), 'utf8');
}

export async function loadHistory(path: string): Promise<Operation[]> {
  return parseHistory(await readFile(path, 'utf8'));
}

export interface HistoryRecorderOptions {
  /** The run's one monotonic clock, injected so that tests and simulations control time. */
  now: () => number;
  /** A bound on the history's size; past it the recorder throws instead of eating the heap. */
  operationsMax?: number;
}

interface PendingOperation {
  readonly client: number;
  readonly kind: OperationKind;
  readonly key: string;
  readonly value: string | null;
  readonly invoke: number;
}

/**
 * Records operations as clients run them. Each operation ends in exactly one of ok / fail / unknown;
 * fail (a definite failure) drops the operation, and any operation still pending when the history
 * is taken is recorded as unknown, because the run ended before its outcome was learnt.
 */
export class HistoryRecorder {
  private readonly now: () => number;
  private readonly operationsMax: number;
  private readonly pending = new Map<number, PendingOperation>();
  private readonly finished: Operation[] = [];
  private nextId = 0;

  constructor(options: HistoryRecorderOptions) {
    this.now = options.now;
    this.operationsMax = options.operationsMax ?? 10_000_000;
  }

  /** Call just before sending a read; returns the operation's id. */
  invokeRead(client: number, key: string): number {
    return this.invoke({ client, kind: 'read', key, value: null, invoke: this.now() });
  }

  /** Call just before sending a write (value null = delete); returns the operation's id. */
  invokeWrite(client: number, key: string, value: string | null): number {
    return this.invoke({ client, kind: 'write', key, value, invoke: this.now() });
  }

  /** The reply confirmed success; for a read, pass the value it returned (null = absent). */
  ok(id: number, observed: string | null = null): void {
    const complete = this.now();
    const op = this.take(id);
    const value = op.kind === 'read' ? observed : op.value;
    this.finished.push({ id, ...op, value, complete, ok: true });
  }

  /** The server refused before applying anything: the operation never happened. */
  fail(id: number): void {
    this.take(id);
  }

  /** Timeout, lost connection, or any error that does not prove the operation was not applied. */
  unknown(id: number): void {
    const op = this.take(id);
    this.finished.push({ id, ...op, complete: null, ok: false });
  }

  /** The history so far, in invocation order; operations still in flight count as unknown. */
  history(): Operation[] {
    const inFlight: Operation[] = [...this.pending].map(([id, op]) => ({
      id,
      ...op,
      complete: null,
      ok: false,
    }));
    return [...this.finished, ...inFlight].sort((a, b) => a.invoke - b.invoke || a.id - b.id);
  }

  private invoke(op: PendingOperation): number {
    if (this.finished.length + this.pending.size >= this.operationsMax) {
      throw new Error(`history recorder: more than ${this.operationsMax} operations`);
    }
    const id = this.nextId++;
    this.pending.set(id, op);
    return id;
  }

  private take(id: number): PendingOperation {
    const op = this.pending.get(id);
    if (op === undefined) throw new Error(`history recorder: operation #${id} is not in flight`);
    this.pending.delete(id);
    return op;
  }
}
