// The gRPC protocol for the collector's two (unary) procedures, beside Connect:
// https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md. The body is one
// length-prefixed message (a flag byte, compressed or not, then a 4-byte length);
// the answer is HTTP 200 with the message, and the status in the trailers. A
// refusal carries the same code and message as in Connect, as gRPC's number.
import type { OutgoingHttpHeaders } from 'node:http'
import { ConnectError, type ConnectCode } from '../proto/connect.ts'
import { ACCEPT_ENCODING, bodyEncoding, inflate, mediaType, type Response } from './transport.ts'

export const GRPC_CONTENT_TYPE = 'application/grpc'

/** Connect's codes are gRPC's, by name: these are their numbers (0 is OK). */
const GRPC_STATUS: Readonly<Record<ConnectCode, number>> = {
  canceled: 1,
  unknown: 2,
  invalid_argument: 3,
  deadline_exceeded: 4,
  not_found: 5,
  already_exists: 6,
  permission_denied: 7,
  resource_exhausted: 8,
  failed_precondition: 9,
  aborted: 10,
  out_of_range: 11,
  unimplemented: 12,
  internal: 13,
  unavailable: 14,
  data_loss: 15,
  unauthenticated: 16,
}

const PREFIX_BYTES = 5

/** gRPC with the proto codec (application/grpc, application/grpc+proto); other gRPC codecs are not served. */
export function isGrpc(contentType: string | undefined): boolean {
  const type = mediaType(contentType)
  return type === GRPC_CONTENT_TYPE || type === `${GRPC_CONTENT_TYPE}+proto`
}

/** The one message of a unary request body, inflated (grpc-encoding) within `maxBytes`. */
export async function unframe(body: Buffer, grpcEncoding: string | undefined, maxBytes: number): Promise<Buffer> {
  if (body.length < PREFIX_BYTES) throw new ConnectError('invalid_argument', `gRPC body of ${body.length} bytes: a unary request is one length-prefixed message (5-byte prefix)`)
  const compressed = body[0]!
  const length = body.readUInt32BE(1)
  if (compressed > 1) throw new ConnectError('invalid_argument', `gRPC message flag ${compressed}: must be 0 (plain) or 1 (compressed)`)
  if (body.length !== PREFIX_BYTES + length) {
    throw new ConnectError('invalid_argument', `gRPC body of ${body.length} bytes does not hold exactly one message of ${length} bytes; a unary request sends one`)
  }
  const message = body.subarray(PREFIX_BYTES)
  if (compressed === 0) return message
  const encoding = bodyEncoding(grpcEncoding)
  if (!encoding || encoding === 'identity') {
    throw new ConnectError('unimplemented', `gRPC message compressed with ${JSON.stringify((grpcEncoding ?? 'identity').slice(0, 64))}, which is not supported; use ${ACCEPT_ENCODING}`)
  }
  return inflate(message, encoding, maxBytes, 'message')
}

export function answerGrpc(res: Response, message: Uint8Array): void {
  const prefix = Buffer.alloc(PREFIX_BYTES)
  prefix.writeUInt32BE(message.length, 1)
  res.addTrailers({ 'grpc-status': '0' }) // OK
  res.writeHead(200, headers()).end(Buffer.concat([prefix, message]))
}

/** A refusal: no message, the status in the trailers (`extra`, e.g. retry-after, goes with the headers). */
export function answerGrpcError(res: Response, error: ConnectError, extra: OutgoingHttpHeaders = {}): void {
  res.addTrailers({ 'grpc-status': String(GRPC_STATUS[error.code]), 'grpc-message': percentEncode(error.message) })
  res.writeHead(200, { ...extra, ...headers() }).end()
}

function headers(): OutgoingHttpHeaders {
  return { 'content-type': GRPC_CONTENT_TYPE, 'grpc-accept-encoding': ACCEPT_ENCODING }
}

/** grpc-message: UTF-8, with every byte outside printable ASCII (and '%') as %XX. */
function percentEncode(message: string): string {
  let out = ''
  for (const byte of Buffer.from(message)) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  return out
}
