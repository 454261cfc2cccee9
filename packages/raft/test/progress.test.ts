// The leader's per-peer replication state: the in-flight window and the probe / replicate /
// snapshot state machine.
import { Inflights, Progress, ProgressState } from '../src/progress';
import { RaftInvariantError } from '../src/types';

describe('Inflights', () => {
  it('starts empty and not full', () => {
    const inflights = new Inflights(3, 1000);
    expect(inflights.count()).toBe(0);
    expect(inflights.full()).toBe(false);
  });

  it('is full once it holds countMax appends', () => {
    const inflights = new Inflights(3, 1000);
    inflights.add(1, 10);
    inflights.add(2, 10);
    expect(inflights.full()).toBe(false);
    inflights.add(3, 10);
    expect(inflights.count()).toBe(3);
    expect(inflights.full()).toBe(true);
  });

  it('is full once the bytes in flight reach bytesMax', () => {
    const inflights = new Inflights(100, 100);
    inflights.add(1, 60);
    expect(inflights.full()).toBe(false);
    inflights.add(2, 40);
    expect(inflights.count()).toBe(2);
    expect(inflights.full()).toBe(true);
  });

  it('accepts one append that takes the bytes past bytesMax, then none', () => {
    const inflights = new Inflights(100, 100);
    inflights.add(1, 99);
    inflights.add(2, 500);
    expect(inflights.full()).toBe(true);
    expect(() => inflights.add(3, 1)).toThrow(RaftInvariantError);
    expect(inflights.count()).toBe(2);
  });

  it('refuses an append while full', () => {
    const inflights = new Inflights(1, 1000);
    inflights.add(5, 1);
    expect(() => inflights.add(6, 1)).toThrow(RaftInvariantError);
    expect(() => inflights.add(6, 1)).toThrow('inflight window is full');
  });

  it('refuses an append whose last index is not after the previous one', () => {
    const inflights = new Inflights(10, 1000);
    inflights.add(5, 1);
    expect(() => inflights.add(5, 1)).toThrow(RaftInvariantError);
    expect(() => inflights.add(4, 1)).toThrow('inflight 4 not after 5');
    expect(inflights.count()).toBe(1);
  });

  it('frees every append whose last index is at or below the acknowledged index', () => {
    const inflights = new Inflights(10, 1000);
    inflights.add(3, 10);
    inflights.add(6, 10);
    inflights.add(9, 10);
    inflights.freeLE(5);
    expect(inflights.count()).toBe(2);
    inflights.freeLE(6);
    expect(inflights.count()).toBe(1);
    inflights.freeLE(100);
    expect(inflights.count()).toBe(0);
  });

  it('frees nothing for an acknowledgement below the first append', () => {
    const inflights = new Inflights(10, 1000);
    inflights.add(3, 10);
    inflights.freeLE(2);
    expect(inflights.count()).toBe(1);
  });

  it('gives back the bytes of freed appends', () => {
    const inflights = new Inflights(10, 100);
    inflights.add(1, 50);
    inflights.add(2, 50);
    expect(inflights.full()).toBe(true);
    inflights.freeLE(1);
    expect(inflights.full()).toBe(false);
    inflights.add(3, 49);
    expect(inflights.full()).toBe(false);
    inflights.add(4, 1);
    expect(inflights.full()).toBe(true);
  });

  it('gives back count slots of freed appends', () => {
    const inflights = new Inflights(2, 1000);
    inflights.add(1, 1);
    inflights.add(2, 1);
    expect(inflights.full()).toBe(true);
    inflights.freeLE(1);
    expect(inflights.full()).toBe(false);
    inflights.add(3, 1);
    expect(inflights.full()).toBe(true);
  });

  it('forgets everything on reset, including the byte count and the last index', () => {
    const inflights = new Inflights(2, 100);
    inflights.add(10, 60);
    inflights.add(11, 60);
    inflights.reset();
    expect(inflights.count()).toBe(0);
    expect(inflights.full()).toBe(false);
    // A lower index is accepted again after a reset, and the old bytes no longer count.
    inflights.add(5, 99);
    expect(inflights.full()).toBe(false);
  });
});

describe('Progress', () => {
  function progress(next = 5, countMax = 2, bytesMax = 1000): Progress {
    return new Progress(2, next, countMax, bytesMax);
  }

  describe('state transitions', () => {
    it('starts probing at the given next index with nothing matched', () => {
      const pr = progress(5);
      expect(pr.state).toBe(ProgressState.Probe);
      expect(pr.match).toBe(0);
      expect(pr.next).toBe(5);
      expect(pr.probeSent).toBe(false);
      expect(pr.pendingSnapshot).toBe(0);
    });

    it('replicates from match + 1 after a probe succeeds', () => {
      const pr = progress(5);
      expect(pr.maybeUpdate(4)).toBe(true);
      pr.becomeReplicate();
      expect(pr.state).toBe(ProgressState.Replicate);
      expect(pr.next).toBe(5);
      expect(pr.match).toBe(4);
    });

    it('resets the in-flight window and the probe flag on each transition', () => {
      const pr = progress(5, 2);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.sentEntries(6, 10);
      pr.sentEntries(8, 10);
      expect(pr.inflights.count()).toBe(2);
      pr.becomeProbe();
      expect(pr.inflights.count()).toBe(0);
      pr.sentEntries(8, 10);
      expect(pr.probeSent).toBe(true);
      pr.becomeSnapshot(20);
      expect(pr.probeSent).toBe(false);
    });

    it('sends a snapshot, then probes after the pending snapshot', () => {
      const pr = progress(5);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.becomeSnapshot(20);
      expect(pr.state).toBe(ProgressState.Snapshot);
      expect(pr.pendingSnapshot).toBe(20);
      pr.becomeProbe();
      expect(pr.state).toBe(ProgressState.Probe);
      expect(pr.next).toBe(21);
      expect(pr.match).toBe(4);
      expect(pr.pendingSnapshot).toBe(0);
    });

    it('probes after match when the peer matched beyond the pending snapshot', () => {
      const pr = progress(5);
      pr.becomeSnapshot(20);
      pr.maybeUpdate(30);
      pr.becomeProbe();
      expect(pr.next).toBe(31);
    });

    it('probes from match + 1 when the snapshot was abandoned (pendingSnapshot cleared)', () => {
      const pr = progress(5);
      pr.maybeUpdate(4);
      pr.becomeSnapshot(20);
      pr.pendingSnapshot = 0;
      pr.becomeProbe();
      expect(pr.next).toBe(5);
    });

    it('probes from match + 1 when leaving replicate, dropping optimistic progress', () => {
      const pr = progress(5, 10);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.sentEntries(9, 10);
      expect(pr.next).toBe(10);
      pr.becomeProbe();
      expect(pr.next).toBe(5);
    });
  });

  describe('sentEntries', () => {
    it('advances next optimistically and fills the window in replicate', () => {
      const pr = progress(5, 10);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.sentEntries(7, 30);
      expect(pr.next).toBe(8);
      expect(pr.inflights.count()).toBe(1);
    });

    it('marks the probe as sent without moving next in probe', () => {
      const pr = progress(5);
      pr.sentEntries(7, 30);
      expect(pr.next).toBe(5);
      expect(pr.probeSent).toBe(true);
      expect(pr.inflights.count()).toBe(0);
    });

    it('refuses to send entries in snapshot state', () => {
      const pr = progress(5);
      pr.becomeSnapshot(10);
      expect(() => pr.sentEntries(7, 30)).toThrow(RaftInvariantError);
    });
  });

  describe('maybeUpdate', () => {
    it('raises match and next for a newer acknowledgement', () => {
      const pr = progress(5);
      expect(pr.maybeUpdate(7)).toBe(true);
      expect(pr.match).toBe(7);
      expect(pr.next).toBe(8);
    });

    it('reports a stale acknowledgement as no update and keeps match', () => {
      const pr = progress(5);
      pr.maybeUpdate(7);
      expect(pr.maybeUpdate(6)).toBe(false);
      expect(pr.maybeUpdate(7)).toBe(false);
      expect(pr.match).toBe(7);
      expect(pr.next).toBe(8);
    });

    it('never moves next backwards', () => {
      const pr = progress(5, 10);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.sentEntries(12, 1);
      expect(pr.maybeUpdate(6)).toBe(true);
      expect(pr.match).toBe(6);
      expect(pr.next).toBe(13);
    });

    it('clears probeSent when the probe is acknowledged', () => {
      const pr = progress(5);
      pr.sentEntries(5, 1);
      expect(pr.isPaused()).toBe(true);
      pr.maybeUpdate(5);
      expect(pr.probeSent).toBe(false);
      expect(pr.isPaused()).toBe(false);
    });
  });

  describe('maybeDecrTo', () => {
    it('ignores a stale rejection at or below match in replicate', () => {
      const pr = progress(5, 10);
      pr.maybeUpdate(6);
      pr.becomeReplicate();
      pr.sentEntries(10, 1);
      expect(pr.maybeDecrTo(6, 0)).toBe(false);
      expect(pr.maybeDecrTo(3, 0)).toBe(false);
      expect(pr.next).toBe(11);
      expect(pr.match).toBe(6);
    });

    it('falls back to match + 1 on a fresh rejection in replicate, ignoring the hint', () => {
      const pr = progress(5, 10);
      pr.maybeUpdate(6);
      pr.becomeReplicate();
      pr.sentEntries(10, 1);
      expect(pr.maybeDecrTo(8, 2)).toBe(true);
      expect(pr.next).toBe(7);
    });

    it('ignores a rejection in probe that does not answer the last probe (next - 1)', () => {
      const pr = progress(10);
      pr.sentEntries(10, 1);
      expect(pr.maybeDecrTo(7, 3)).toBe(false);
      expect(pr.maybeDecrTo(10, 3)).toBe(false);
      expect(pr.next).toBe(10);
      expect(pr.probeSent).toBe(true);
    });

    it('backs up to the rejected index in probe when the hint is higher', () => {
      const pr = progress(10);
      expect(pr.maybeDecrTo(9, 50)).toBe(true);
      expect(pr.next).toBe(9);
    });

    it('skips back to hint + 1 in probe when the hint is lower', () => {
      const pr = progress(10);
      pr.sentEntries(10, 1);
      expect(pr.maybeDecrTo(9, 3)).toBe(true);
      expect(pr.next).toBe(4);
      expect(pr.probeSent).toBe(false);
    });

    it('never backs up below match + 1 in probe', () => {
      const pr = progress(10);
      pr.maybeUpdate(5);
      pr.becomeProbe();
      pr.maybeUpdate(9);
      // next is 10 now; a hint of 2 would go below the known match of 9.
      expect(pr.maybeDecrTo(9, 2)).toBe(true);
      expect(pr.next).toBe(10);
    });

    it('never backs up below index 1', () => {
      const pr = progress(2);
      expect(pr.maybeDecrTo(1, 0)).toBe(true);
      expect(pr.next).toBe(1);
    });
  });

  describe('isPaused', () => {
    it('pauses a probe until its answer arrives', () => {
      const pr = progress(5);
      expect(pr.isPaused()).toBe(false);
      pr.sentEntries(6, 1);
      expect(pr.isPaused()).toBe(true);
      pr.maybeDecrTo(4, 4);
      expect(pr.isPaused()).toBe(false);
    });

    it('pauses replicate only while the window is full', () => {
      const pr = progress(5, 2);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.sentEntries(5, 1);
      expect(pr.isPaused()).toBe(false);
      pr.sentEntries(6, 1);
      expect(pr.isPaused()).toBe(true);
      pr.maybeUpdate(5);
      pr.inflights.freeLE(5);
      expect(pr.isPaused()).toBe(false);
    });

    it('pauses replicate when the window is full by bytes', () => {
      const pr = progress(5, 100, 100);
      pr.maybeUpdate(4);
      pr.becomeReplicate();
      pr.sentEntries(5, 100);
      expect(pr.isPaused()).toBe(true);
    });

    it('always pauses in snapshot state', () => {
      const pr = progress(5);
      pr.becomeSnapshot(10);
      expect(pr.isPaused()).toBe(true);
      pr.maybeUpdate(7);
      expect(pr.isPaused()).toBe(true);
    });
  });
});
