// What every eraftkv-ctl command gets: the global flags, a lazily created client and the output.
import { readFileSync } from 'node:fs';
import { EraftKvClient, type ClientTls } from '@eraftkv/client';
import { prefixRangeEnd } from '@eraftkv/protocol';
import { UsageError } from './exit-codes';
import type { Io, WriteOut } from './output';

export const defaultEndpoints = '127.0.0.1:8088,127.0.0.1:8089,127.0.0.1:8090';

export interface GlobalArgs {
  readonly endpoints: string;
  readonly writeOut: WriteOut;
  readonly commandTimeout: string;
  /** TLS: the CA file the servers' certificates are checked against ('' for plaintext). */
  readonly cacert: string;
  /** TLS: a client certificate and its key ('' for none). */
  readonly cert: string;
  readonly key: string;
}

/** Reads a TLS file of a flag, or says which flag and file could not be read. */
function tlsFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${flag} ${path} cannot be read: ${(err as Error).message}`);
  }
}

export class Context {
  private clientInstance: EraftKvClient | null = null;
  readonly endpoints: string[];
  readonly timeoutMs: number;
  readonly tls: ClientTls | undefined;

  constructor(
    readonly args: GlobalArgs,
    readonly io: Io,
  ) {
    this.endpoints = args.endpoints
      .split(',')
      .map((e) => e.trim())
      .filter((e) => e !== '');
    if (this.endpoints.length === 0) throw new UsageError('--endpoints is empty');
    this.timeoutMs = parseDuration(args.commandTimeout, '--command-timeout');
    if ((args.cert === '') !== (args.key === ''))
      throw new UsageError('--cert and --key go together (a client certificate and its key)');
    if (args.cacert === '' && args.cert !== '')
      throw new UsageError('--cert needs --cacert (the CA that signed the servers certificates)');
    this.tls =
      args.cacert === ''
        ? undefined
        : {
            ca: tlsFile('--cacert', args.cacert),
            ...(args.cert === ''
              ? {}
              : { cert: tlsFile('--cert', args.cert), key: tlsFile('--key', args.key) }),
          };
  }

  get writeOut(): WriteOut {
    return this.args.writeOut;
  }

  client(): EraftKvClient {
    this.clientInstance ??= new EraftKvClient({
      endpoints: this.endpoints,
      deadlineMs: this.timeoutMs,
      tls: this.tls,
    });
    return this.clientInstance;
  }

  close(): void {
    this.clientInstance?.close();
  }
}

/** Parses "5s", "500ms", "2m" or a plain number of milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (m === null) throw new UsageError(`${flag}: "${text}" is not a duration like 5s, 500ms or 2m`);
  const value = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const ms = unit === 'm' ? value * 60_000 : unit === 's' ? value * 1000 : value;
  if (ms <= 0) throw new UsageError(`${flag} must be positive`);
  return Math.round(ms);
}

/** A positive integer argument, or a UsageError naming it. */
export function positiveInt(value: unknown, name: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`${name} must be a positive integer, got ${String(value)}`);
  return n;
}

/** Wraps a command's work: builds the context, runs it, prints errors, sets the exit code. */
export type Runner = (
  work: (ctx: Context, args: Record<string, unknown>) => Promise<number>,
) => (args: Record<string, unknown>) => Promise<void>;

/** A text argument (yargs may hand over numbers for numeric-looking text). */
export function textArg(value: unknown, name: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  throw new UsageError(`${name} is missing`);
}

/**
 * The range end that a command's [end] argument (named `endName` in messages), --prefix or
 * --from-key ask for, exclusive of one another: empty for the key alone, a single 0 byte for
 * every key from the key on.
 */
export function rangeEndOf(key: Buffer, args: Record<string, unknown>, endName = '[end]'): Buffer {
  const end = args.end === undefined ? null : Buffer.from(textArg(args.end, endName), 'utf8');
  const chosen: [boolean, string][] = [
    [end !== null, endName],
    [args.prefix === true, '--prefix'],
    [args['from-key'] === true, '--from-key'],
  ];
  const given = chosen.filter(([on]) => on).map(([, name]) => name);
  if (given.length > 1) throw new UsageError(`${given.join(' and ')} exclude each other`);
  if (end !== null) {
    if (Buffer.compare(end, key) <= 0) throw new UsageError(`${endName} must come after <key>`);
    return end;
  }
  if (args.prefix === true) return prefixRangeEnd(key);
  if (args['from-key'] === true) return Buffer.from([0]);
  return Buffer.alloc(0);
}
