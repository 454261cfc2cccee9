// Noticing that a node's data dir was deleted or replaced while the node runs (an operator's
// rm -rf, a volume unmounted or swapped under it). RocksDB keeps writing to files it has open even
// once they are unlinked, so without a check the node would go on acknowledging writes that a
// restart loses, and fail only much later on an obscure I/O error. The watch looks at the data
// dir and its identity file every second: once either is gone, or another file has its name, the
// node stops as after any storage failure, naming the data dir. Its peers count it out from then
// on; a restart on the emptied dir is a new incarnation, which they refuse until the operator has
// removed the node and added it again.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DataDirError, identityFileName } from './node-identity';

interface Watched {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

export class DataDirWatch {
  private timer: NodeJS.Timeout | null = null;
  private reported = false;

  private constructor(
    private readonly dataDir: string,
    private readonly watched: readonly Watched[],
  ) {}

  /**
   * Watches `dataDir` (the directory, and its identity file when it has one) from now on;
   * `onGone` is called once, with an error naming it.
   */
  static async start(
    dataDir: string,
    intervalMs: number,
    onGone: (err: Error) => void,
  ): Promise<DataDirWatch> {
    const watched: Watched[] = [];
    for (const path of [dataDir, join(dataDir, identityFileName)]) {
      const found = await stat(path).catch(() => null);
      if (found !== null) watched.push({ path, dev: found.dev, ino: found.ino });
    }
    const watch = new DataDirWatch(dataDir, watched);
    if (intervalMs > 0) {
      watch.timer = setInterval(() => {
        void watch.check().then((problem) => {
          if (problem === null || watch.reported || watch.timer === null) return;
          watch.reported = true;
          watch.stop();
          onGone(new DataDirError(problem));
        });
      }, intervalMs);
      watch.timer.unref();
    }
    return watch;
  }

  /** What is wrong with the data dir now, or null. */
  async check(): Promise<string | null> {
    const remedy =
      'this node can no longer keep what it acknowledges, so it stops. Its data is lost: remove it from its group ' +
      '(eraftkv-ctl member remove), start it on an empty data dir with an empty --peers and add it back as a learner';
    for (const w of this.watched) {
      const seen = await this.look(w);
      if (seen === 'same') continue;
      // The paths are looked at one after the other, so a change can fall between two looks: the
      // dir seen as it was, then its identity file gone from the dir that took its place. Which
      // change it was is told by the dir as it is now.
      const dir = this.watched.find((x) => x.path === this.dataDir);
      const dirNow = dir === undefined || dir === w ? seen : await this.look(dir);
      const [what, path] = dirNow === 'same' ? [seen, w.path] : [dirNow, this.dataDir];
      return what === 'other'
        ? `data dir ${this.dataDir} was replaced while the node ran (${path} is another file now): ${remedy}`
        : `data dir ${this.dataDir} was deleted while the node ran (${path} is gone): ${remedy}`;
    }
    return null;
  }

  private async look(w: Watched): Promise<'same' | 'other' | 'gone'> {
    try {
      const now = await stat(w.path);
      return now.dev === w.dev && now.ino === w.ino ? 'same' : 'other';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT' || code === 'ENOTDIR' ? 'gone' : 'same';
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
