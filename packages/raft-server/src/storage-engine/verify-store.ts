// Checks every block of a RocksDB store in a child process, before the server opens it. The
// binding's scans decode blocks without checking their checksums (verifyChecksums makes gets
// check them afterwards), and RocksDB's own assertions abort the process on some damaged blocks:
// in a child, such an abort is a verdict about the store rather than the end of the server.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { openRocksEngine } from './rocks-engine';
import { StorageCorruptionError, StorageEngineError } from './storage-engine';

/** What the child prints on its stdout, one JSON line. */
interface Verdict {
  readonly ok: boolean;
  readonly corrupt: boolean;
  readonly message: string;
}

/** The child's exit code after a verdict it printed. */
const exitWithVerdict = 3;
/** The most of the child's stderr kept for a message. */
const stderrKeptBytes = 4096;
/** The most of the child's stdout read (its verdict line; RocksDB messages are far shorter). */
const stdoutKeptBytes = 64 * 1024;

/** This file as built (tests run the sources, whose child is the built file next to them). */
function childScript(): string {
  return __filename.endsWith('.ts')
    ? join(__dirname, '..', '..', 'dist', 'storage-engine', 'verify-store.js')
    : __filename;
}

/**
 * Reads every block of the RocksDB store at `path` with its checksum checked, in a child process;
 * the store must not be open. A damaged store fails with a StorageCorruptionError (RocksDB's
 * words, which name the file when it knows it, or the crash it had); any other failure with a
 * StorageEngineError.
 */
export function verifyStoreChecksums(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childScript(), path], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A server that exits while its store is checked (stopped during start-up) takes the check
    // with it: left running, it would hold the store's lock against the server's next start.
    const stopChild = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', stopChild);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < stdoutKeptBytes) stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-stderrKeptBytes);
    });
    child.once('error', (err) => {
      process.removeListener('exit', stopChild);
      reject(new StorageEngineError(`cannot check ${path}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      process.removeListener('exit', stopChild);
      if (code === 0) return resolve();
      const verdict = code === exitWithVerdict ? parseVerdict(stdout) : null;
      if (verdict !== null) {
        return reject(
          verdict.corrupt
            ? new StorageCorruptionError(path, verdict.message)
            : new StorageEngineError(verdict.message),
        );
      }
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
      const said = stderr.trim().split('\n').slice(-3).join(' / ');
      if (signal === 'SIGABRT' || /Assertion|Corruption/.test(said)) {
        return reject(
          new StorageCorruptionError(
            path,
            `the RocksDB data in ${path} is corrupt: reading every block of it, RocksDB ${how}${said === '' ? '' : ` (${said})`}`,
          ),
        );
      }
      reject(
        new StorageEngineError(
          `checking ${path}, the check ${how}${said === '' ? '' : ` (${said})`}`,
        ),
      );
    });
  });
}

/**
 * verifyStoreChecksums for a server's state before it opens it: a damaged store fails with the
 * check's words followed by `consequence` (what the damage means for this server and what to do).
 */
export async function verifyStateBeforeOpen(path: string, consequence: string): Promise<void> {
  try {
    await verifyStoreChecksums(path);
  } catch (err) {
    if (!(err instanceof StorageCorruptionError)) throw err;
    throw new StorageCorruptionError(err.path, `${err.message}. ${consequence}`, { cause: err });
  }
}

/** The child's verdict line, or null when it is not one (then its exit says what happened). */
function parseVerdict(stdout: string): Verdict | null {
  try {
    const v = JSON.parse(stdout) as Partial<Verdict> | null;
    return typeof v?.message === 'string' && typeof v.corrupt === 'boolean'
      ? { ok: false, corrupt: v.corrupt, message: v.message }
      : null;
  } catch {
    return null;
  }
}

/** How often the child looks whether the server that started it is still there. */
const parentCheckMs = 250;
/** The child's exit code once its parent is gone (nobody reads it). */
const exitParentGone = 4;

async function childMain(path: string): Promise<void> {
  // A server killed outright (SIGKILL) cannot stop its check: the check stops itself once its
  // parent is gone, rather than go on reading (and holding the store's lock) for nobody.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(exitParentGone);
  }, parentCheckMs).unref();
  let verdict: Verdict = { ok: true, corrupt: false, message: '' };
  try {
    const engine = await openRocksEngine(path);
    try {
      await engine.verifyChecksums();
    } finally {
      await engine.close();
    }
  } catch (err) {
    verdict = {
      ok: false,
      corrupt: err instanceof StorageCorruptionError,
      message: (err as Error).message,
    };
  }
  if (verdict.ok) process.exit(0);
  process.stdout.write(`${JSON.stringify(verdict)}\n`, () => process.exit(exitWithVerdict));
}

if (require.main === module) void childMain(process.argv[2] ?? '');
