// Deliberately broken Raft variants. Each breaks one rule that a real implementation (ERaftKV's
// RaftServer among them) has been seen to break; the simulation must catch every one of them.
import { committedIndex } from '../../src/quorum';
import { MessageType, type Message } from '../../src/message';
import { Raft } from '../../src/raft';
import { type NodeId } from '../../src/types';

/** Grants a vote to any up-to-date candidate, even after voting for another in the same term. */
export class DoubleVoteRaft extends Raft {
  protected override canGrantVote(m: Message): boolean {
    return this.log.isUpToDate(m.index, m.logTerm);
  }
}

/** Commits whatever a majority stores, even an entry of an earlier term (Raft figure 8). */
export class PreviousTermCommitRaft extends Raft {
  protected override maybeCommit(): boolean {
    const index = committedIndex(this.voters(), (id) => this.progress.get(id)?.match ?? 0);
    if (index <= this.log.committed) return false;
    this.log.commitTo(index);
    this.afterCommit();
    return true;
  }
}

/** Counts a quorum as half the voters, rounded up: wrong for every even cluster size. */
export class EvenQuorumRaft extends Raft {
  protected override maybeCommit(): boolean {
    const voters = this.voters();
    const matches = voters
      .map((id: NodeId) => this.progress.get(id)?.match ?? 0)
      .sort((a, b) => b - a);
    const index = matches[Math.ceil(voters.length / 2) - 1] ?? 0;
    if (!this.log.maybeCommit(index, this.term)) return false;
    this.afterCommit();
    return true;
  }
}

/** Accepts appends and heartbeats from a leader of an older term as if they were current. */
export class StaleTermAppendRaft extends Raft {
  override step(m: Message): void {
    if (m.term < this.term && (m.type === MessageType.Append || m.type === MessageType.Heartbeat)) {
      super.step({ ...m, term: this.term });
      return;
    }
    super.step(m);
  }
}
