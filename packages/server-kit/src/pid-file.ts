// The pid file of a server process: <data dir>/eraftkv.pid, written once the node has started and
// removed when the process exits. A launcher uses it to find and stop a node that an operator
// restarted by hand, and to say which process holds a data dir. A SIGKILL leaves the file behind,
// and pids are reused, so a reader trusts it only after checking in /proc that the process is alive
// and runs with `--data-dir` naming that very directory.
import { readFileSync, readlinkSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const pidFileName = 'eraftkv.pid';

export function pidFilePath(dataDir: string): string {
  return join(dataDir, pidFileName);
}

/** Writes this process's pid into `dataDir`'s pid file, and removes the file when it exits. */
export function writePidFile(dataDir: string): void {
  const path = pidFilePath(dataDir);
  // Written aside and renamed, so that a reader never sees half a pid.
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${process.pid}\n`);
  renameSync(temporary, path);
  process.once('exit', () => removePidFile(dataDir, process.pid));
}

/** Removes `dataDir`'s pid file if it still names `pid` (a newer process may own it now). */
export function removePidFile(dataDir: string, pid: number): void {
  if (readPidFile(dataDir) !== pid) return;
  try {
    unlinkSync(pidFilePath(dataDir));
  } catch {
    // Already gone: nothing to do.
  }
}

/** The pid in `dataDir`'s pid file, or null when there is no such file or it holds no pid. */
export function readPidFile(dataDir: string): number | null {
  let text: string;
  try {
    text = readFileSync(pidFilePath(dataDir), 'utf8');
  } catch {
    return null;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/** Whether process `pid` exists and is not a zombie (Linux /proc). */
export function isProcessAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X' && state !== '';
}

/** The data dir named on process `pid`'s command line (resolved against its cwd), or null. */
export function dataDirOfProcess(pid: number): string | null {
  let args: string[];
  let cwd: string;
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return null;
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if ((arg === '--data-dir' || arg === '--dataDir') && i + 1 < args.length)
      return resolve(cwd, args[i + 1]);
    const eq = /^--(?:data-dir|dataDir)=(.+)$/.exec(arg);
    if (eq !== null) return resolve(cwd, eq[1]);
  }
  return null;
}

/** Whether `pid` is a live process running with `--data-dir` naming `dataDir`. */
export function isNodeOfDataDir(pid: number, dataDir: string): boolean {
  return isProcessAlive(pid) && dataDirOfProcess(pid) === resolve(dataDir);
}

/**
 * The live process that holds `dataDir` according to its pid file, or null (no pid file, or it
 * names a process that is gone or is not this data dir's node).
 */
export function dataDirOwner(dataDir: string): number | null {
  const pid = readPidFile(dataDir);
  return pid !== null && isNodeOfDataDir(pid, dataDir) ? pid : null;
}
