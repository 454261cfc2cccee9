// The profile summary attributes self time to the right categories and leaves idle time out.
import { summarise, type CpuProfile } from '../profile-summary';

const frame = (id: number, functionName: string, url: string, hitCount: number) => ({
  id,
  callFrame: { functionName, url },
  hitCount,
});

describe('profile-summary', () => {
  it('splits busy time by category and lists the functions with the most self time', () => {
    const profile: CpuProfile = {
      startTime: 0,
      endTime: 10_000_000, // 10 s in µs, spread over 100 hits: 100 ms each
      nodes: [
        frame(1, '(idle)', '', 50),
        frame(2, '(garbage collector)', '', 10),
        frame(3, '_batch', 'file:///x/node_modules/rocksdb/leveldown.js', 20),
        frame(4, 'step', 'file:///x/packages/raft/dist/raft.js', 5),
        frame(5, 'respond', 'node:internal/http2/core', 15),
      ],
    };
    const text = summarise('leader', profile, 2);
    expect(text.split('\n')).toEqual([
      'leader: 10.0 s profiled, 5.0 s busy',
      '   40.0%  rocksdb binding',
      '   30.0%  grpc + http2',
      '   20.0%  gc',
      '   10.0%  raft core',
      '  top 2 functions by self time (share of busy):',
      '   40.0%  _batch node_modules/rocksdb/leveldown.js',
      '   30.0%  respond node:internal/http2/core',
    ]);
  });

  it('counts anonymous native frames where they were called from', () => {
    const profile: CpuProfile = {
      startTime: 0,
      endTime: 1_000_000,
      nodes: [
        { ...frame(1, '_batch', 'file:///x/node_modules/rocksdb/leveldown.js', 1), children: [2] },
        { ...frame(2, '', '', 3), children: [3] },
        frame(3, '', '', 4),
        frame(4, '', '', 2),
      ],
    };
    const text = summarise('follower', profile, 1).split('\n');
    // 8 of 10 hits inside the binding's native code; the orphan counts as other.
    expect(text[1]).toBe('   80.0%  rocksdb binding');
    expect(text[2]).toBe('   20.0%  other');
    expect(text[4]).toBe('   80.0%  _batch node_modules/rocksdb/leveldown.js');
  });
});
