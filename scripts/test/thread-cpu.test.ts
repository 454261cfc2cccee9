// thread-cpu reads per-thread CPU times from /proc and splits them by kind of thread.
import { difference, parseThreadStat, threadClass } from '../thread-cpu';

describe('thread-cpu', () => {
  it('reads the name and the user and system ticks of a stat line, even with ) in the name', () => {
    const line =
      '4242 (rocksdb:low0) S 1 4242 4242 0 -1 4194368 10 0 0 0 123 45 0 0 20 0 9 0 100 0 0';
    expect(parseThreadStat(line)).toEqual({ name: 'rocksdb:low0', user: 123, system: 45 });
    const odd = '7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 9 8 0 0 20 0 1 0 5 0 0';
    expect(parseThreadStat(odd)).toEqual({ name: 'a) b', user: 9, system: 8 });
    expect(() => parseThreadStat('garbage')).toThrow(/not a \/proc stat line/);
  });

  it('classes the main thread, RocksDB threads and the rest', () => {
    expect(threadClass(10, 10, 'node')).toBe('main');
    expect(threadClass(10, 11, 'rocksdb:high0')).toBe('rocksdb');
    expect(threadClass(10, 12, 'node')).toBe('other');
  });

  it('adds up the time each class spent between two samples, new threads included', () => {
    const before = new Map([
      [10, { cls: 'main' as const, user: 100, system: 10 }],
      [11, { cls: 'other' as const, user: 5, system: 5 }],
    ]);
    const after = new Map([
      [10, { cls: 'main' as const, user: 150, system: 12 }],
      [11, { cls: 'other' as const, user: 7, system: 9 }],
      [12, { cls: 'rocksdb' as const, user: 3, system: 1 }],
    ]);
    expect(difference(before, after, 10)).toEqual({
      main: { user: 500, system: 20 },
      rocksdb: { user: 30, system: 10 },
      other: { user: 20, system: 40 },
    });
  });
});
