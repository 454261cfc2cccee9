// The chaos suite's lease check (scripts/chaos/leases.ts) on hand-made lease lives: what it
// accepts and each kind of wrong lease it must report.
import { leaseProblems, type LeaseRecord } from '../chaos/leases';

let nextId = 0x1_0000_0000;
/** A lease of `ttlMs` last kept alive (or granted) by a send at `keptSentAt`. */
function lease(fields: Partial<LeaseRecord> & { keptSentAt: number }): LeaseRecord {
  return {
    key: `chaos-lease/0/${nextId}`,
    id: ++nextId,
    ttlMs: 2000,
    goneSeenAt: null,
    goneHow: '',
    end: 'held',
    absentAfterRevoke: null,
    presentAtEnd: false,
    ...fields,
  };
}

describe('the chaos lease check', () => {
  it('accepts leases gone no earlier than their TTL after the last keep-alive answered', () => {
    expect(
      leaseProblems([
        lease({
          keptSentAt: 1000,
          goneSeenAt: 3000,
          goneHow: 'a keep-alive was answered "not held"',
          end: 'lost',
        }),
        lease({
          keptSentAt: 1000,
          goneSeenAt: 9000,
          goneHow: 'its key was read absent',
          end: 'lost',
        }),
        lease({ keptSentAt: 1000, end: 'revoked', absentAfterRevoke: true, presentAtEnd: null }),
        lease({ keptSentAt: 1000, end: 'walked-away', presentAtEnd: false }),
        // Its key unread at the end: unchecked, not wrong (the report counts it as unread).
        lease({ keptSentAt: 1000, end: 'held', presentAtEnd: null }),
      ]),
    ).toEqual([]);
  });

  it('reports a lease seen gone before its TTL ran from the last keep-alive answered', () => {
    const early = lease({
      keptSentAt: 1000,
      goneSeenAt: 2500,
      goneHow: 'a keep-alive was answered "not held"',
      end: 'lost',
    });
    const problems = leaseProblems([early]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^lease 0000000100000[0-9a-f]{3} \(TTL 2 s, key .*\) expired early: a keep-alive was answered "not held" 1500 ms after/,
    );
  });

  it('reports a revoked lease whose key is still there', () => {
    const problems = leaseProblems([
      lease({ keptSentAt: 1000, end: 'revoked', absentAfterRevoke: false, presentAtEnd: null }),
    ]);
    expect(problems).toEqual([expect.stringMatching(/its key was still there after the revoke$/)]);
  });

  it('reports a lease left alone whose key is still there at the end', () => {
    const problems = leaseProblems([
      lease({ keptSentAt: 1000, end: 'walked-away', presentAtEnd: true }),
      lease({ keptSentAt: 1000, end: 'held', presentAtEnd: true }),
    ]);
    expect(problems).toHaveLength(2);
    for (const p of problems) expect(p).toMatch(/never expired/);
  });
});
