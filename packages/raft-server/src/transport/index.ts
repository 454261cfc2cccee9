export * from './message-codec';
export {
  DeferredPeerInbox,
  PeerRefusal,
  peerServiceHandlers,
  type PeerInbox,
  type PeerServiceHandlers,
} from './peer-service';
export {
  createGrpcPeerRpc,
  PeerTransport,
  type PeerRpc,
  type PeerTransportOptions,
} from './peer-transport';
