export * from './message-codec';
export {
  DeferredPeerInbox,
  PeerRefusal,
  peerServiceHandlers,
  type PeerAnswer,
  type PeerAnswers,
  type PeerAuthenticator,
  type PeerCall,
  type PeerInbox,
  type PeerInput,
  type PeerServiceHandlers,
} from './peer-service';
export {
  createGrpcPeerRpc,
  PeerTransport,
  type PeerRpc,
  type PeerTransportOptions,
} from './peer-transport';
