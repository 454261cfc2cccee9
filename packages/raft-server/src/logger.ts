// Structured logging: one JSON line per event, with a level and fields. Both servers and the
// RaftServer log through this interface; tests pass a silent or capturing logger.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function isLogLevel(value: string): value is LogLevel {
  return value in levelRank;
}

/** Writes JSON lines at or above `level` to `write` (stderr by default). */
export function jsonLogger(
  level: LogLevel,
  base: LogFields = {},
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const min = levelRank[level];
  const log =
    (lvl: LogLevel) =>
    (message: string, fields: LogFields = {}): void => {
      if (levelRank[lvl] < min) return;
      write(
        `${JSON.stringify({ ts: new Date().toISOString(), level: lvl, msg: message, ...base, ...fields })}\n`,
      );
    };
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => jsonLogger(level, { ...base, ...fields }, write),
  };
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

/** Logs a line at most once per interval for the same key: repeated reports of one thing. */
export class ThrottledLog {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  warn(key: string, message: string, fields: LogFields): void {
    if (!this.quiet(key)) this.logger.warn(message, fields);
  }

  error(key: string, message: string, fields: LogFields): void {
    if (!this.quiet(key)) this.logger.error(message, fields);
  }

  private quiet(key: string): boolean {
    const now = Date.now();
    const last = this.last.get(key);
    if (last !== undefined && now - last < this.intervalMs) return true;
    if (this.last.size > 1000) this.last.clear();
    this.last.set(key, now);
    return false;
  }
}
