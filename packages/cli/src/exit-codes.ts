// etcdctl's exit codes, so that scripts written for etcd keep working: 0 success, 1 an error,
// 2 a bad connection or an unavailable cluster, 3 invalid input, 128 bad command-line arguments.
import {
  ClusterError,
  InvalidArgumentError,
  NotLeaderError,
  TimeoutError,
  UnavailableError,
  WrongShardError,
} from '@eraftkv/client';

export const exitCodes = {
  success: 0,
  error: 1,
  badConnection: 2,
  invalidInput: 3,
  badArgs: 128,
} as const;

/** A usage mistake found after yargs parsed the arguments (exit 128). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The exit code for an error thrown by a command. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError) return exitCodes.badArgs;
  if (err instanceof InvalidArgumentError) return exitCodes.invalidInput;
  if (
    err instanceof UnavailableError ||
    err instanceof TimeoutError ||
    err instanceof NotLeaderError
  ) {
    return exitCodes.badConnection;
  }
  if (err instanceof ClusterError || err instanceof WrongShardError) return exitCodes.error;
  return exitCodes.error;
}
