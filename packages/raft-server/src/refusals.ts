// The error a caller of RaftServer gets for each refusal of the core (RaftRefusal): what
// happened and what to do, naming the leader when the node is not it.
import { ErrorCode } from '@eraftkv/protocol';
import { noNode, RaftRefusal, type NodeId } from '@eraftkv/raft';
import { BusyError, NotLeaderError, RejectedError } from './errors';

/** The error for `refusal`; `leader` is the leader this node knows, at `leaderAddress`. */
export function refusalError(
  refusal: RaftRefusal,
  selfId: NodeId,
  leader: NodeId,
  leaderAddress: string,
): Error {
  switch (refusal) {
    case RaftRefusal.NotLeader:
    case RaftRefusal.Removed:
      return new NotLeaderError(leader === selfId ? noNode : leader, leaderAddress);
    case RaftRefusal.TransferInProgress:
      return new BusyError('a leadership transfer is in progress; retry shortly');
    case RaftRefusal.Busy:
      return new BusyError(
        'too much uncommitted data or too many pending reads; retry with backoff',
      );
    case RaftRefusal.MembershipChangePending:
      return new RejectedError(
        ErrorCode.MEMBERSHIP_CHANGE_PENDING,
        'another membership change is still in progress; retry when it has committed',
      );
    case RaftRefusal.NodeNotFound:
      return new RejectedError(
        ErrorCode.NODE_NOT_FOUND,
        'the node is not a member of the group (in the required role)',
      );
    case RaftRefusal.NodeExists:
      return new RejectedError(ErrorCode.NODE_EXISTS, 'the node is already a member in that role');
    case RaftRefusal.LastVoter:
      return new RejectedError(
        ErrorCode.REJECTED,
        'removing the last voter would leave the group unable to elect a leader',
      );
  }
}
