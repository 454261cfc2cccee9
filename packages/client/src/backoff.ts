// Retry pacing: exponential backoff with full jitter, so that many clients retrying after the same
// failure do not stampede the new leader.

export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
}

/** The pause before retry number `attempt` (1-based): uniform in [0, min(max, base * 2^(attempt-1))]. */
export function backoffMs(
  attempt: number,
  o: BackoffOptions,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(o.maxMs, o.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(random() * ceiling);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
