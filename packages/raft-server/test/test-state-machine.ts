// A small state machine on real RocksDB for the runtime's tests: it records every applied normal
// entry's data under its index, with the applied index in the same atomic batch, and answers each
// proposal with the index it was applied at. Snapshots are a plain dump of its keys.
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { EntryType, type Entry } from '@eraftkv/raft';
import { openRocksEngine, type StateMachine, type StorageEngine, type WriteOp } from '../src';

const appliedKey = Buffer.from('m:applied');
const dataKey = (index: number): Buffer => {
  const b = Buffer.alloc(9);
  b[0] = 0x64; // 'd'
  b.writeUIntBE(index, 3, 6);
  return b;
};

export class RecordingStateMachine implements StateMachine<number> {
  private constructor(
    private engine: StorageEngine,
    readonly path: string,
  ) {}

  static async open(path: string): Promise<RecordingStateMachine> {
    return new RecordingStateMachine(await openRocksEngine(path), path);
  }

  async appliedIndex(): Promise<number> {
    const raw = await this.engine.get(appliedKey);
    return raw === undefined ? 0 : raw.readUIntBE(0, 6);
  }

  async apply(entries: readonly Entry[]): Promise<(number | undefined)[]> {
    const ops: WriteOp[] = [];
    for (const e of entries) {
      if (e.type === EntryType.Normal) {
        ops.push({ type: 'put', key: dataKey(e.index), value: Buffer.from(e.data) });
      }
    }
    const applied = Buffer.alloc(6);
    applied.writeUIntBE(entries[entries.length - 1].index, 0, 6);
    ops.push({ type: 'put', key: appliedKey, value: applied });
    await this.engine.write(ops, { sync: false });
    return entries.map((e) => (e.type === EntryType.Normal ? e.index : undefined));
  }

  /** Every applied command, in index order, as strings. */
  async commands(): Promise<string[]> {
    const out: string[] = [];
    for await (const [, value] of this.engine.iterate({ gte: dataKey(0), lt: Buffer.from('e') })) {
      out.push(value.toString());
    }
    return out;
  }

  async syncApplied(): Promise<number> {
    const raw = await this.engine.get(appliedKey);
    const applied = raw === undefined ? 0 : raw.readUIntBE(0, 6);
    if (raw !== undefined) {
      await this.engine.write([{ type: 'put', key: appliedKey, value: raw }], { sync: true });
    }
    return applied;
  }

  async writeSnapshot(path: string): Promise<number> {
    const lines: string[] = [];
    let applied = 0;
    for await (const [key, value] of this.engine.iterate({})) {
      if (key.equals(appliedKey)) applied = value.readUIntBE(0, 6);
      lines.push(`${key.toString('hex')} ${value.toString('hex')}`);
    }
    await writeFile(path, lines.join('\n'));
    return applied;
  }

  async restoreSnapshot(path: string, index: number): Promise<void> {
    await this.engine.deleteRange({});
    const ops: WriteOp[] = [];
    const lines = createInterface({ input: createReadStream(path) });
    for await (const line of lines) {
      if (line === '') continue;
      const [k, v] = line.split(' ');
      ops.push({ type: 'put', key: Buffer.from(k, 'hex'), value: Buffer.from(v, 'hex') });
    }
    await this.engine.write(ops, { sync: true });
    const applied = await this.appliedIndex();
    if (applied !== index)
      throw new Error(`snapshot restored applied ${applied}, expected ${index}`);
  }

  async close(): Promise<void> {
    await this.engine.close();
  }
}
