// Waiting in tests: waitUntil (wait-until.ts, which the scripts use too) with its settings named.
import { waitUntil } from './wait-until';

export interface WaitForOptions {
  /** What is awaited, as the timeout's message names it: "timed out ... waiting for <what>". */
  readonly what: string;
  /** How long to wait at the most (default 10 s). */
  readonly timeoutMs?: number;
  /** How long between two checks (default 20 ms). */
  readonly intervalMs?: number;
}

/**
 * Polls `condition` until it returns a value (not undefined or false) and resolves with it;
 * rejects after `timeoutMs` with a message naming `what` (and the check's last error: a check
 * that throws counts as "not yet").
 */
export function waitFor<T>(
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitForOptions,
): Promise<T> {
  return waitUntil(condition, options.timeoutMs ?? 10_000, options.what, options.intervalMs ?? 20);
}
