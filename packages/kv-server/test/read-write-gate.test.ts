// The reader-writer gate that keeps reads from seeing half of an apply batch.
import { ReadWriteGate } from '../src/read-write-gate';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('ReadWriteGate', () => {
  it('runs readers together and a writer alone', async () => {
    const gate = new ReadWriteGate();
    const events: string[] = [];
    const hold = deferred();
    const r1 = gate.shared(async () => {
      events.push('r1 start');
      await hold.promise;
      events.push('r1 end');
    });
    const r2 = gate.shared(async () => {
      events.push('r2 start');
      await hold.promise;
      events.push('r2 end');
    });
    const w = gate.exclusive(async () => {
      events.push('w');
      await Promise.resolve();
    });
    await Promise.resolve();
    expect(events).toEqual(['r1 start', 'r2 start']);
    hold.resolve();
    await Promise.all([r1, r2, w]);
    expect(events).toEqual(['r1 start', 'r2 start', 'r1 end', 'r2 end', 'w']);
  });

  it('makes new readers wait behind a waiting writer', async () => {
    const gate = new ReadWriteGate();
    const events: string[] = [];
    const hold = deferred();
    const r1 = gate.shared(async () => {
      await hold.promise;
      events.push('r1');
    });
    const w = gate.exclusive(() => {
      events.push('w');
      return Promise.resolve();
    });
    const r2 = gate.shared(() => {
      events.push('r2');
      return Promise.resolve();
    });
    hold.resolve();
    await Promise.all([r1, w, r2]);
    expect(events).toEqual(['r1', 'w', 'r2']);
  });

  it('releases the gate when the work fails', async () => {
    const gate = new ReadWriteGate();
    await expect(gate.exclusive(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(gate.shared(() => Promise.resolve(7))).resolves.toBe(7);
  });
});
