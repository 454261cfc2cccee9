// The administration RPCs every eraftkv process answers for its own Raft group: membership
// changes, leadership transfer and status. A follower answers NOT_LEADER with the leader's
// address, so a tool can send them to any member and follow the hint.
import {
  ErrorCode,
  MemberChangeType,
  type ERaftKvServer,
  type MemberChangeReq,
  type MemberChangeResp,
  type StatusReq,
  type StatusResp,
  type TransferLeaderReq,
  type TransferLeaderResp,
} from '@eraftkv/protocol';
import type { Membership } from '@eraftkv/raft';
import { checkPeerNumber, InvalidArgumentError, membershipToWire } from '@eraftkv/raft-server';
import type { Logger, RaftServer } from '@eraftkv/raft-server';
import { errorAnswer, unaryHandler } from './error-mapping';
import { checkPeerAddress } from './peers';
import type { AccessControl } from './access';

export interface AdminInfo {
  readonly serverType: 'meta' | 'kv';
  readonly version: string;
  /** The topology version this node knows. */
  readonly configVersion: () => number;
  /** The approximate size of the node's data on disk. */
  readonly dbSizeBytes: () => Promise<number>;
  /** A digest of the whole state machine and the applied index it covers (optional). */
  readonly stateDigest?: () => Promise<{ index: number; digest: string }>;
  /**
   * The digest this node made at a consistency check's log index (kv servers): the digest,
   * 'pending' while it is computed, or null when it has none for that index.
   */
  readonly checkDigest?: (index: number) => { readonly digest: string } | 'pending' | null;
  /** The slots holding at least one key and the applied index they were read at (kv servers). */
  readonly slotsWithKeys?: () => Promise<{ index: number; slots: number[] }>;
  /** Who may change membership and leadership (with auth enabled, the role root). */
  readonly access?: AccessControl;
  /** Where errors that become INTERNAL (bugs) are logged. */
  readonly logger: Logger;
}

export function adminHandlers<R>(
  raft: RaftServer<R>,
  info: AdminInfo,
): Pick<ERaftKvServer, 'memberChange' | 'transferLeader' | 'status'> {
  const groupCheck = (groupId: number): void => {
    if (groupId !== raft.identity.groupId) {
      throw new InvalidArgumentError(
        `group_id is ${groupId}, but this node serves group ${raft.identity.groupId}`,
      );
    }
  };
  return {
    memberChange: unaryHandler<MemberChangeReq, MemberChangeResp>(async (req, call) => {
      info.access?.requireAdmin(call, 'MemberChange');
      groupCheck(req.groupId);
      checkPeerNumber(req.nodeId, 'node_id', 1);
      const needsAddress =
        req.changeType === MemberChangeType.ADD_LEARNER ||
        req.changeType === MemberChangeType.ADD_VOTER;
      if (needsAddress) checkPeerAddress(req.address, 'address');
      try {
        let membership: Membership;
        switch (req.changeType) {
          case MemberChangeType.ADD_LEARNER:
            membership = await raft.addLearner(req.nodeId, req.address);
            break;
          case MemberChangeType.ADD_VOTER:
            membership = await raft.addVoter(req.nodeId, req.address);
            break;
          case MemberChangeType.PROMOTE:
            membership = await raft.promote(req.nodeId);
            break;
          case MemberChangeType.REMOVE:
            membership = await raft.removeMember(req.nodeId);
            break;
          case MemberChangeType.UNRECOGNIZED:
          default:
            throw new InvalidArgumentError(
              `change_type ${String(req.changeType)} is not a MemberChangeType`,
            );
        }
        return {
          errorCode: ErrorCode.OK,
          leaderAddress: raft.addressOf(raft.leaderId()),
          errorMessage: '',
          membership: membershipToWire(membership),
        };
      } catch (err) {
        const a = errorAnswer(err);
        return {
          errorCode: a.errorCode,
          leaderAddress: a.leaderAddress,
          errorMessage: a.errorMessage,
          membership: membershipToWire(raft.status().membership),
        };
      }
    }, info.logger),
    transferLeader: unaryHandler<TransferLeaderReq, TransferLeaderResp>(async (req, call) => {
      info.access?.requireAdmin(call, 'TransferLeader');
      groupCheck(req.groupId);
      // Target 0 would "succeed" at once on a node that knows no leader (leader id 0).
      checkPeerNumber(req.targetId, 'target_id', 1);
      try {
        await raft.transferLeader(req.targetId);
        return {
          errorCode: ErrorCode.OK,
          leaderAddress: raft.addressOf(req.targetId),
          errorMessage: '',
          leaderId: req.targetId,
        };
      } catch (err) {
        const a = errorAnswer(err);
        return {
          errorCode: a.errorCode,
          leaderAddress: a.leaderAddress,
          errorMessage: a.errorMessage,
          leaderId: a.leaderId,
        };
      }
    }, info.logger),
    status: unaryHandler<StatusReq, StatusResp>(async (req) => {
      const digest =
        req.withDigest && info.stateDigest !== undefined ? await info.stateDigest() : null;
      const slots =
        req.withSlots && info.slotsWithKeys !== undefined ? await info.slotsWithKeys() : null;
      const check =
        req.checkIndex > 0 && info.checkDigest !== undefined
          ? info.checkDigest(req.checkIndex)
          : null;
      const s = raft.status();
      const self = s.membership.find((m) => m.id === s.id);
      return {
        nodeId: s.id,
        groupId: s.groupId,
        address: self?.address ?? '',
        role: s.role,
        term: s.term,
        leaderId: s.leader,
        leaderAddress: s.leaderAddress,
        commitIndex: s.commit,
        appliedIndex: s.applied,
        lastLogIndex: s.lastIndex,
        snapshotIndex: s.snapshotIndex,
        membership: membershipToWire(s.membership),
        progress: s.progress.map((p) => ({
          id: p.id,
          matchIndex: p.match,
          nextIndex: p.next,
          state: p.state,
          recentActive: p.recentActive,
        })),
        configVersion: info.configVersion(),
        version: info.version,
        serverType: info.serverType,
        dbSizeBytes: await info.dbSizeBytes(),
        isLearner: self?.learner ?? false,
        stateDigest: digest?.digest ?? '',
        stateDigestIndex: digest?.index ?? 0,
        incarnation: s.incarnation,
        clusterId: s.clusterId,
        slotsWithKeys: slots?.slots ?? [],
        slotsWithKeysIndex: slots?.index ?? 0,
        checkDigest: check === null || check === 'pending' ? '' : check.digest,
        checkPending: check === 'pending',
      };
    }, info.logger),
  };
}
