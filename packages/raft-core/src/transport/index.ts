export * from './message-codec';
export { peerServiceHandlers, type PeerInbox, type PeerServiceHandlers } from './peer-service';
export {
  createGrpcPeerRpc,
  PeerTransport,
  type PeerRpc,
  type PeerTransportOptions,
} from './peer-transport';
