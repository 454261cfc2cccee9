// Auth in a chaos run (--auth): the nemesis administers as root, the workload's clients are the
// user "chaos", granted readwrite on the workload's key prefixes only. At the end, after every
// fault, that user must still be refused keys outside them (on every kv group), and must never
// have been refused its own keys.
import { AccessDeniedError, EraftKvClient, type ClientTls } from '@eraftkv/client';
import { prefixRangeEnd } from '@eraftkv/protocol';
import { rootRole, rootUser } from '@eraftkv/server-kit';
import type { Workload } from './workload';

/** Sets up root, the workload's role and user, and enables auth. */
export async function enableAuth(admin: EraftKvClient, prefixes: readonly string[]): Promise<void> {
  const auth = admin.auth;
  await auth.addUser(rootUser);
  await auth.grantRole(rootUser, rootRole);
  await auth.addRole('workload');
  for (const prefix of prefixes) {
    await auth.grantPermission('workload', {
      type: 'readwrite',
      key: Buffer.from(prefix),
      rangeEnd: prefixRangeEnd(Buffer.from(prefix)),
    });
  }
  await auth.addUser('chaos');
  await auth.grantRole('chaos', 'workload');
  await auth.enable();
}

/** Keys outside every granted prefix, enough of them to land in every kv group. */
export const outsideKeyCount = 32;
const outsideKeys = Array.from({ length: outsideKeyCount }, (_, i) => `outside-${i}`);

/** What went wrong with auth in the run: writes outside the grants taken, own keys refused. */
export async function authProblems(
  endpoints: readonly string[],
  tls: ClientTls | undefined,
  workload: Workload,
): Promise<string[]> {
  const problems: string[] = [];
  const refusedOwn = workload.counts.errors.get('AccessDeniedError') ?? 0;
  if (refusedOwn > 0) problems.push(`the workload was refused its own keys ${refusedOwn} times`);
  const client = new EraftKvClient({ endpoints: [...endpoints], deadlineMs: 20_000, tls });
  try {
    for (const key of outsideKeys) {
      for (const [what, attempt] of [
        ['put', () => client.put(key, 'bypass')],
        ['get', () => client.get(key)],
      ] as const) {
        try {
          await attempt();
          problems.push(`user "chaos" could ${what} ${key}, outside its grants`);
        } catch (err) {
          if (!(err instanceof AccessDeniedError))
            problems.push(`${what} ${key} failed otherwise: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    client.close();
  }
  return problems;
}
