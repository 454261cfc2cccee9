// How every eraftkv process dials another (the client, a server calling another group, the Raft
// peer transport): one set of gRPC channel options, kept with the wire contract they serve.
import type * as grpc from '@grpc/grpc-js';

/** The default for the largest gRPC message sent or received. */
export const defaultMessageBytesMax = 16 * 1024 * 1024;

/**
 * The channel options of a connection from one eraftkv process to a server: the client's, a
 * server's calls into another group, and the Raft peer transport (which adds its own keepalive).
 * A short reconnect backoff, so that a restarted node is found again within about a second.
 */
export function grpcChannelOptions(messageBytesMax = defaultMessageBytesMax): grpc.ChannelOptions {
  return {
    // Channelz bookkeeping costs CPU on every call and nothing here reads it.
    'grpc.enable_channelz': 0,
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.min_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 1000,
    // A peer named by DNS (a pod, a host) may come back at another address: when a connection is
    // lost the name is looked up again, at most once a second (grpc-js waits 30 s by default).
    'grpc.dns_min_time_between_resolutions_ms': 1000,
    // No service config in DNS TXT records: a lookup nobody answers must not slow a dial.
    'grpc.service_config_disable_resolution': 1,
    'grpc.max_send_message_length': messageBytesMax,
    'grpc.max_receive_message_length': messageBytesMax,
  };
}
