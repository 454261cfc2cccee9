// resolveRaftConfig: defaults for everything left out, and a clear RangeError for a
// configuration that cannot work.
import {
  raftConfigDefaults,
  resolveRaftConfig,
  type RaftConfig,
  type RaftConfigInput,
} from '../src/config';
import { SeededRng } from '../src/rng';
import { jsonMembershipCodec } from '../src/simulation';

const rng = new SeededRng(1);
const required = { id: 1, rng, membershipCodec: jsonMembershipCodec } as const;

function resolve(overrides: Partial<RaftConfigInput> = {}): RaftConfig {
  return resolveRaftConfig({ ...required, ...overrides });
}

describe('resolveRaftConfig', () => {
  it('fills every option left out with its default', () => {
    expect(resolve()).toEqual({ ...raftConfigDefaults, ...required });
  });

  it('defaults to 10 election ticks, 1 heartbeat tick, pre-vote and check-quorum on', () => {
    const config = resolve();
    expect(config.electionTicks).toBe(10);
    expect(config.heartbeatTicks).toBe(1);
    expect(config.preVote).toBe(true);
    expect(config.checkQuorum).toBe(true);
    expect(config.autoPromoteLearners).toBe(true);
    expect(config.applied).toBe(0);
  });

  it('keeps the injected rng and codec', () => {
    const config = resolve();
    expect(config.rng).toBe(rng);
    expect(config.membershipCodec).toBe(jsonMembershipCodec);
  });

  it('keeps the values it is given', () => {
    const config = resolve({
      id: 7,
      electionTicks: 20,
      heartbeatTicks: 4,
      preVote: false,
      checkQuorum: false,
      appendBytesMax: 4096,
      inflightAppendsMax: 8,
      learnerCatchUpEntriesMax: 0,
      applied: 12,
    });
    expect(config).toMatchObject({
      id: 7,
      electionTicks: 20,
      heartbeatTicks: 4,
      preVote: false,
      checkQuorum: false,
      appendBytesMax: 4096,
      inflightAppendsMax: 8,
      learnerCatchUpEntriesMax: 0,
      applied: 12,
    });
    expect(config.inflightBytesMax).toBe(raftConfigDefaults.inflightBytesMax);
  });

  it('treats an option passed as undefined like one left out', () => {
    const config = resolve({
      electionTicks: undefined,
      preVote: undefined,
      checkQuorum: undefined,
    });
    expect(config.electionTicks).toBe(raftConfigDefaults.electionTicks);
    expect(config.preVote).toBe(true);
    expect(config.checkQuorum).toBe(true);
  });

  it('still requires an id passed as undefined', () => {
    expect(() => resolve({ id: undefined })).toThrow(
      new RangeError('raft config: id must be a positive integer, got undefined'),
    );
  });

  const positiveKeys = [
    'id',
    'electionTicks',
    'heartbeatTicks',
    'appendBytesMax',
    'inflightAppendsMax',
    'inflightBytesMax',
    'uncommittedBytesMax',
    'committedEntriesPerReadyBytesMax',
    'pendingReadsMax',
  ] as const;

  describe.each(positiveKeys)('%s', (key) => {
    // heartbeatTicks must stay below electionTicks, so give the election a wide margin.
    const valid = { electionTicks: 1000 };

    it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
      'rejects %p with a RangeError naming the option',
      (value) => {
        const call = (): RaftConfig => resolve({ ...valid, [key]: value });
        expect(call).toThrow(RangeError);
        expect(call).toThrow(`raft config: ${key} must be a positive integer, got ${value}`);
      },
    );

    it('accepts its smallest valid value', () => {
      // Every positive option accepts 1, except electionTicks, which must exceed heartbeatTicks.
      const smallest = key === 'electionTicks' ? 2 : 1;
      expect(resolve({ ...valid, [key]: smallest })[key]).toBe(smallest);
    });
  });

  it('rejects heartbeatTicks equal to electionTicks', () => {
    const call = (): RaftConfig => resolve({ electionTicks: 5, heartbeatTicks: 5 });
    expect(call).toThrow(RangeError);
    expect(call).toThrow('raft config: heartbeatTicks (5) must be below electionTicks (5)');
  });

  it('rejects heartbeatTicks above electionTicks', () => {
    expect(() => resolve({ electionTicks: 5, heartbeatTicks: 6 })).toThrow(
      'raft config: heartbeatTicks (6) must be below electionTicks (5)',
    );
  });

  it('rejects a default heartbeat that does not fit a tiny election timeout', () => {
    expect(() => resolve({ electionTicks: 1 })).toThrow(
      'raft config: heartbeatTicks (1) must be below electionTicks (1)',
    );
  });

  it('accepts heartbeatTicks just below electionTicks', () => {
    expect(resolve({ electionTicks: 5, heartbeatTicks: 4 }).heartbeatTicks).toBe(4);
  });

  it('rejects a negative or fractional learnerCatchUpEntriesMax', () => {
    const message = 'raft config: learnerCatchUpEntriesMax must be a non-negative integer';
    expect(() => resolve({ learnerCatchUpEntriesMax: -1 })).toThrow(new RangeError(message));
    expect(() => resolve({ learnerCatchUpEntriesMax: 0.5 })).toThrow(new RangeError(message));
  });

  it('rejects a negative or fractional applied index', () => {
    const message = 'raft config: applied must be a non-negative integer';
    expect(() => resolve({ applied: -1 })).toThrow(new RangeError(message));
    expect(() => resolve({ applied: 2.5 })).toThrow(new RangeError(message));
  });
});
