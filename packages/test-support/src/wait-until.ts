// Waiting for a condition with a deadline, for tests and the tools in scripts/ that watch a cluster
// from outside (a leader elected, an index applied, a process healthy) instead of sleeping a fixed
// time. The one implementation; waitFor names its settings.

/**
 * Polls `check` every `intervalMs` until it returns a value (not undefined or false) and
 * resolves with it; rejects once `timeoutMs` has passed. A check that throws counts as "not yet"
 * (a node still starting refuses connections); its last error is in the timeout's message.
 */
export async function waitUntil<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = ` (last error: ${(err as Error).message})`;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
