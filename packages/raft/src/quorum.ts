// Majority arithmetic, kept apart so that it can be tested on its own: the ERaftKV code this
// project replaces counted quorums wrongly for even cluster sizes.
import type { NodeId } from './types';

/** The number of votes that make a majority of `voterCount` voters. */
export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest index replicated on a majority of voters, given each voter's match index.
 * Voters missing from `matchOf` count as 0. With no voters, nothing is committed (0).
 */
export function committedIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => number): number {
  if (voters.length === 0) return 0;
  const matches = voters.map(matchOf).sort((a, b) => a - b);
  // Ascending order: the entry at n - quorum is held by exactly `quorum` voters or more.
  return matches[matches.length - quorumSize(matches.length)];
}

export enum VoteResult {
  Pending = 'pending',
  Won = 'won',
  Lost = 'lost',
}

/** The outcome of an election given the votes received so far (true: granted). */
export function voteResult(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  if (voters.length === 0) return VoteResult.Won;
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === true) granted++;
    else if (vote === false) rejected++;
  }
  const quorum = quorumSize(voters.length);
  if (granted >= quorum) return VoteResult.Won;
  if (rejected > voters.length - quorum) return VoteResult.Lost;
  return VoteResult.Pending;
}

/** True when the nodes in `active` include a majority of `voters`. */
export function hasQuorum(voters: readonly NodeId[], active: (id: NodeId) => boolean): boolean {
  return voters.filter(active).length >= quorumSize(voters.length);
}
