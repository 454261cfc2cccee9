// A node whose data dir is deleted or replaced while it runs stops, naming the data dir, instead
// of acknowledging writes that a restart would lose.
import { mkdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { waitFor } from '@eraftkv/test-support';
import { DataDirError, StoppedError } from '../src';
import { TestCluster } from './cluster';

jest.setTimeout(30_000);

describe('the data dir watch', () => {
  let cluster: TestCluster;
  beforeEach(async () => {
    cluster = new TestCluster({ dataDirCheckMs: 50 });
    await cluster.init();
  });
  afterEach(async () => {
    await cluster.close();
  });

  it.each([
    ['deleted', 'was deleted while the node ran', (dir: string) => rm(dir, { recursive: true })],
    [
      'replaced',
      'was replaced while the node ran',
      // Back to back, without yielding: a check that ran in between would see the dir deleted
      // (which it was, for that moment) and say so.
      (dir: string) => {
        renameSync(dir, `${dir}.old`);
        mkdirSync(dir);
        return Promise.resolve();
      },
    ],
  ])('stops a node whose data dir was %s', async (_what, message, change) => {
    const [node] = await cluster.startGroup(1);
    const leader = await cluster.waitForLeader();
    await leader.server.propose(Buffer.from('before'));
    await change(node.dataDir);
    const err = await waitFor(() => node.server.fatalError() ?? undefined, {
      what: 'the node to stop',
    });
    expect(err).toBeInstanceOf(DataDirError);
    expect(err.message).toContain(`data dir ${node.dataDir} ${message}`);
    expect(err.message).toContain('eraftkv-ctl member remove');
    await expect(node.server.propose(Buffer.from('after'))).rejects.toThrow(StoppedError);
    node.running = false;
  });

  it('leaves a node alone while its data dir stays', async () => {
    const [node] = await cluster.startGroup(1);
    await cluster.waitForLeader();
    // Commands keep coming for long enough that many checks (50 ms apart) pass meanwhile.
    const started = Date.now();
    let sent = 0;
    while (Date.now() - started < 500) await node.server.propose(Buffer.from(`c${sent++}`));
    await waitFor(async () => ((await node.sm.commands()).length === sent ? true : undefined), {
      what: 'every command applied',
    });
    expect(node.server.fatalError()).toBeNull();
  });
});
