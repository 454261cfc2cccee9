// A membership-change codec for tests and the simulation (the runtime uses the protobuf one).
import type { MembershipChange, MembershipChangeCodec } from '../types';

export const jsonMembershipCodec: MembershipChangeCodec = {
  encode(change: MembershipChange): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(change));
  },
  decode(data: Uint8Array): MembershipChange {
    return JSON.parse(new TextDecoder().decode(data)) as MembershipChange;
  },
};
