// Encoding of the messages on the hot paths (client requests and answers, appends and their
// answers, log entries) with one reused writer. The generated encoders start every message in a
// new writer whose buffer grows by doubling, zero-filled, as fields are written, and the
// generated serializers then copy the result once more into a Buffer: three allocations and two
// copies per message. Here the writer's buffer is kept between messages (encoding is synchronous,
// so one writer serves everything), and the bytes are copied out once.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import {
  AppendEntriesReq,
  AppendEntriesResp,
  ClientOperationReq,
  ClientOperationResp,
  ERaftKvClient,
  ERaftKvService,
} from './generated/eraftkv';

/** A generated message type (only its encoder is used here). */
export interface MessageEncoder<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

/** A writer whose buffer grew past this is dropped after use, so that one huge message does not stay. */
const keptWriterBytesMax = 1024 * 1024;

let shared = new BinaryWriter();

/**
 * `message` encoded by `type`, in a Buffer of its own (exactly its bytes), after `prefix` when
 * one is given (a byte that tells what follows, as a log entry's command kind).
 */
export function encodeMessage<T>(type: MessageEncoder<T>, message: T, prefix?: number): Buffer {
  const writer = shared;
  let bytes: Uint8Array;
  try {
    if (prefix !== undefined) writer.raw(Uint8Array.of(prefix));
    bytes = type.encode(message, writer).finish();
  } catch (err) {
    shared = new BinaryWriter();
    throw err;
  }
  if (bytes.byteLength > keptWriterBytesMax) shared = new BinaryWriter();
  // finish() returns a copy in an ArrayBuffer of its own: wrapping it copies nothing.
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

type Service = typeof ERaftKvService;

/** A method's definition with encodeMessage serializing its request and response. */
function withEncoders<D extends object, Req, Resp>(
  definition: D,
  request: MessageEncoder<Req>,
  response: MessageEncoder<Resp>,
): D {
  return {
    ...definition,
    requestSerialize: (m: Req) => encodeMessage(request, m),
    responseSerialize: (m: Resp) => encodeMessage(response, m),
  };
}

/**
 * The service definition with encodeMessage as the serializer of the hot methods' messages, for
 * servers (grpc-js serializes responses with it) and clients (requests) alike.
 */
export const eraftKvServiceDefinition: Service = {
  ...ERaftKvService,
  appendEntries: withEncoders(ERaftKvService.appendEntries, AppendEntriesReq, AppendEntriesResp),
  appendEntriesStream: withEncoders(
    ERaftKvService.appendEntriesStream,
    AppendEntriesReq,
    AppendEntriesResp,
  ),
  processRwOperation: withEncoders(
    ERaftKvService.processRwOperation,
    ClientOperationReq,
    ClientOperationResp,
  ),
  processRwOperationStream: withEncoders(
    ERaftKvService.processRwOperationStream,
    ClientOperationReq,
    ClientOperationResp,
  ),
};

/** ERaftKvClient over eraftKvServiceDefinition: what peers and clients connect with. */
export const ERaftKvWireClient = makeGenericClientConstructor(
  eraftKvServiceDefinition,
  'eraftkv.ERaftKv',
) as unknown as typeof ERaftKvClient;
