// The safety checkers of the simulation. They watch every node after every step and record the
// first violation of a Raft guarantee (Raft paper, figure 3):
//   election safety      at most one leader per term;
//   log matching         entries with the same index and term are identical, and so are the
//                        logs before them;
//   leader completeness  a new leader holds every committed entry;
//   state-machine safety no two nodes apply different entries at one index, and no committed
//                        entry is ever lost or replaced;
//   applied <= committed a node never applies beyond its durable commit index.
import type { Entry } from '../types';

export class SafetyViolation extends Error {
  override name = 'SafetyViolation';
}

/** A stable identity of an entry's content: its term, type and data. */
export function entryKey(e: Entry): string {
  return `${e.term}:${e.type}:${Buffer.from(e.data).toString('latin1')}`;
}

export class SafetyChecker {
  /** term -> the one node that led in it. */
  private readonly leaders = new Map<number, number>();
  /** "index/term" -> the content and previous term of the entry stored there by anyone. */
  private readonly stored = new Map<string, { key: string; prevTerm: number }>();
  /** index -> content of the entry applied there (by anyone): the committed history. */
  private readonly committed = new Map<number, string>();
  private committedMax = 0;

  /** The highest index known to be committed (applied by some node). */
  committedIndexMax(): number {
    return this.committedMax;
  }

  committedAt(index: number): string | undefined {
    return this.committed.get(index);
  }

  fail(message: string): never {
    throw new SafetyViolation(message);
  }

  /** Election safety. */
  observeLeader(term: number, id: number): void {
    const existing = this.leaders.get(term);
    if (existing === undefined) this.leaders.set(term, id);
    else if (existing !== id) {
      this.fail(`election safety: nodes ${existing} and ${id} both lead term ${term}`);
    }
  }

  /** Log matching, checked on every entry a node persists (with the term stored before it). */
  observeStored(node: number, entry: Entry, prevTerm: number): void {
    const id = `${entry.index}/${entry.term}`;
    const key = entryKey(entry);
    const seen = this.stored.get(id);
    if (seen === undefined) {
      this.stored.set(id, { key, prevTerm });
      return;
    }
    if (seen.key !== key) {
      this.fail(`log matching: node ${node} stores a different entry at ${id}`);
    }
    if (seen.prevTerm !== prevTerm) {
      this.fail(
        `log matching: node ${node} has term ${prevTerm} before ${id}, another node has ${seen.prevTerm}`,
      );
    }
  }

  /** State-machine safety: the entry applied at an index is the same everywhere, forever. */
  observeApplied(node: number, index: number, key: string): void {
    const seen = this.committed.get(index);
    if (seen === undefined) {
      this.committed.set(index, key);
      if (index > this.committedMax) this.committedMax = index;
    } else if (seen !== key) {
      this.fail(`state-machine safety: node ${node} applied a different entry at ${index}`);
    }
  }

  /**
   * Leader completeness and no lost commits: `termAt` answers the new leader's log. Every entry
   * committed so far must be in it (or below its snapshot, which was checked when installed).
   */
  checkLeaderComplete(
    node: number,
    term: number,
    firstIndex: number,
    lastIndex: number,
    termAt: (index: number) => number | undefined,
  ): void {
    if (lastIndex < this.committedMax) {
      this.fail(
        `leader completeness: leader ${node} of term ${term} ends at ${lastIndex} but ${this.committedMax} is committed`,
      );
    }
    for (let i = Math.max(firstIndex, 1); i <= this.committedMax; i++) {
      const key = this.committed.get(i);
      if (key === undefined) continue;
      const committedTerm = Number(key.slice(0, key.indexOf(':')));
      const have = termAt(i);
      if (have !== committedTerm) {
        this.fail(
          `leader completeness: leader ${node} of term ${term} has term ${have} at ${i}, committed term ${committedTerm}`,
        );
      }
    }
  }
}
