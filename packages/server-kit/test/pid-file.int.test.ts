// The pid file a server writes in its data dir, and how a launcher decides whether to trust it:
// only a live process whose command line names that data dir is the data dir's node.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '@eraftkv/test-support';
import {
  dataDirOfProcess,
  dataDirOwner,
  isNodeOfDataDir,
  isProcessAlive,
  pidFilePath,
  readPidFile,
  removePidFile,
  writePidFile,
} from '../src/pid-file';

describe('pid file', () => {
  let root: string;
  const children: ChildProcess[] = [];

  /** A process that idles with `args` on its command line, as a node would with its flags. */
  function idler(args: readonly string[], cwd?: string): ChildProcess {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60000)', '--', ...args], {
      stdio: 'ignore',
      cwd,
    });
    children.push(child);
    return child;
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'eraftkv-pid-'));
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
  });

  it('holds the pid of the process that wrote it, and goes away when that process exits', async () => {
    const dir = join(root, 'own');
    await mkdir(dir);
    const before = process.listeners('exit');
    writePidFile(dir);
    expect(readPidFile(dir)).toBe(process.pid);
    // writePidFile registered the removal for exit: run it as exit would (not exiting jest).
    const added = process.listeners('exit').filter((l) => !before.includes(l));
    expect(added).toHaveLength(1);
    process.removeListener('exit', added[0]);
    added[0].call(process, 0);
    expect(existsSync(pidFilePath(dir))).toBe(false);
  });

  it('is removed only by the process it names', async () => {
    const dir = join(root, 'other');
    await mkdir(dir);
    await writeFile(pidFilePath(dir), '4242\n');
    removePidFile(dir, 4243);
    expect(readPidFile(dir)).toBe(4242);
    removePidFile(dir, 4242);
    expect(readPidFile(dir)).toBeNull();
    await writeFile(pidFilePath(dir), 'not a pid\n');
    expect(readPidFile(dir)).toBeNull();
  });

  it('names the node of a data dir only while a live process runs with that --data-dir', async () => {
    const dir = join(root, 'node-1');
    await mkdir(dir);
    const node = idler(['--id', '1', '--data-dir', dir]);
    const pid = node.pid!;
    await writeFile(pidFilePath(dir), `${pid}\n`);
    await waitFor(() => dataDirOfProcess(pid) === dir, {
      timeoutMs: 5000,
      what: 'the idler to start',
    });
    expect(isNodeOfDataDir(pid, dir)).toBe(true);
    expect(isNodeOfDataDir(pid, `${dir}/`)).toBe(true);
    expect(dataDirOwner(dir)).toBe(pid);
    // Another data dir, or a live process that is no node (this one): not the owner.
    expect(isNodeOfDataDir(pid, join(root, 'node-2'))).toBe(false);
    expect(isNodeOfDataDir(process.pid, dir)).toBe(false);
    await writeFile(pidFilePath(dir), `${process.pid}\n`);
    expect(dataDirOwner(dir)).toBeNull();
    // A pid file left behind by a process that is gone (SIGKILL leaves it): nobody owns the dir.
    await writeFile(pidFilePath(dir), `${pid}\n`);
    const exited = new Promise((ok) => node.once('exit', ok));
    node.kill('SIGKILL');
    await exited;
    expect(isProcessAlive(pid)).toBe(false);
    expect(dataDirOwner(dir)).toBeNull();
  });

  it('resolves a relative --data-dir, or --data-dir=DIR, against the process working directory', async () => {
    const dir = join(root, 'relative');
    await mkdir(dir);
    const relative = idler(['--data-dir', 'relative'], root);
    const equals = idler([`--data-dir=${dir}`]);
    await waitFor(
      () => dataDirOfProcess(relative.pid!) !== null && dataDirOfProcess(equals.pid!) !== null,
      { timeoutMs: 5000, what: 'the idlers to start' },
    );
    expect(isNodeOfDataDir(relative.pid!, dir)).toBe(true);
    expect(isNodeOfDataDir(equals.pid!, dir)).toBe(true);
  });
});
