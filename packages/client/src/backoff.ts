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

/** Resolves after `ms`, or at once when `signal` is aborted (before or during the wait). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
