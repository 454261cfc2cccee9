// A reader that goes away (`eraftkv-ctl group list | head -3`) makes the next write to stdout or
// stderr fail with EPIPE. Like any Unix tool, eraftkv-ctl then stops quietly instead of dying with
// an unhandled 'error' event and a stack trace.
import { constants } from 'node:os';

/**
 * The exit code after a broken pipe: 128 + SIGPIPE, what a shell reports for a program that the
 * signal ended (etcdctl, a Go program, dies of SIGPIPE; Node ignores the signal, so it exits so).
 */
export const brokenPipeExitCode = 128 + constants.signals.SIGPIPE;

/** What exitOnBrokenPipe listens on: process.stdout and process.stderr, or a test's stand-ins. */
export interface ErrorEmitter {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * Ends the process with brokenPipeExitCode, printing nothing, when a write to any of `streams`
 * fails with EPIPE. Any other stream error is thrown, as it would be without a listener.
 */
export function exitOnBrokenPipe(
  streams: readonly ErrorEmitter[],
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  for (const stream of streams) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      exit(brokenPipeExitCode);
    });
  }
}
