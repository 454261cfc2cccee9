// How a server process ends: SIGTERM or SIGINT stops it gracefully (stop accepting requests,
// finish those in flight, flush, exit 0); a second signal exits at once; a fatal error exits 1.
// SIGKILL needs nothing: every acknowledged write is already durable.
import type { Logger } from '@eraftkv/raft-server';

export interface Lifecycle {
  /** Ends the process after a fatal failure (exit code 1). */
  fatal(err: Error): void;
}

export function installLifecycle(options: {
  readonly logger: Logger;
  /** Graceful stop; the process exits 0 when it resolves. */
  readonly stop: () => Promise<void>;
  /** SIGHUP: read configuration files (TLS certificates) again. */
  readonly reload?: () => void;
}): Lifecycle {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      options.logger.warn('second signal: exiting now', { signal });
      process.exit(130);
    }
    stopping = true;
    options.logger.info('stopping', { signal });
    options.stop().then(
      () => {
        options.logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        options.logger.error('stop failed', { error: (err as Error).message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => {
    options.logger.info('SIGHUP: reading the TLS files again');
    options.reload?.();
  });
  // Started by a launcher with an IPC channel (npm start): when the launcher goes away, so do
  // we, gracefully, instead of lingering as an orphan.
  if (process.send !== undefined) {
    process.on('disconnect', () => {
      if (!stopping) onSignal('SIGTERM');
    });
  }
  return {
    fatal: (err) => {
      options.logger.error('fatal error: exiting', { error: err.message });
      // Nothing more is acknowledged: leave now, the data on disk is what a restart recovers.
      process.exit(1);
    },
  };
}
