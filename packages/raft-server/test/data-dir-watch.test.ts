// The data dir watch names the change it saw, even when the change falls between its looks at the
// dir and at the identity file.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import fsPromises from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirWatch } from '../src/data-dir-watch';
import { identityFileName } from '../src/node-identity';

describe('DataDirWatch.check', () => {
  let root: string;
  let dir: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'eraftkv-dirwatch-'));
    dir = join(root, 'node');
    mkdirSync(dir);
    writeFileSync(join(dir, identityFileName), '{}');
  });
  afterEach(() => {
    jest.restoreAllMocks();
    rmSync(root, { recursive: true, force: true });
  });

  /** Runs `change` once the watch's first look (at the dir itself) has been answered. */
  function changeAfterFirstLook(change: () => void): void {
    const stat = fsPromises.stat.bind(fsPromises);
    let looks = 0;
    jest.spyOn(fsPromises, 'stat').mockImplementation(async (...args: Parameters<typeof stat>) => {
      const answer = await stat(...args);
      if (++looks === 1) change();
      return answer;
    });
  }

  it('says nothing while the dir stays', async () => {
    const watch = await DataDirWatch.start(dir, 0, () => undefined);
    expect(await watch.check()).toBeNull();
  });

  it('says replaced when the dir is replaced between its two looks', async () => {
    const watch = await DataDirWatch.start(dir, 0, () => undefined);
    changeAfterFirstLook(() => {
      renameSync(dir, `${dir}.old`);
      mkdirSync(dir);
    });
    expect(await watch.check()).toContain(
      `data dir ${dir} was replaced while the node ran (${dir} is another file now)`,
    );
  });

  it('says deleted when the dir is deleted between its two looks', async () => {
    const watch = await DataDirWatch.start(dir, 0, () => undefined);
    changeAfterFirstLook(() => rmSync(dir, { recursive: true }));
    expect(await watch.check()).toContain(
      `data dir ${dir} was deleted while the node ran (${dir} is gone)`,
    );
  });

  it('names the identity file when only it is gone', async () => {
    const watch = await DataDirWatch.start(dir, 0, () => undefined);
    rmSync(join(dir, identityFileName));
    expect(await watch.check()).toContain(
      `data dir ${dir} was deleted while the node ran (${join(dir, identityFileName)} is gone)`,
    );
  });
});
