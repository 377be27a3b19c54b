// How the collector's two procedures are carried: HTTP/1.1 and HTTP/2 on one
// port (createListener), and the codecs a request may use, chosen by its content
// type. Each codec turns a body into the typed request of proto/wire.ts and a
// typed answer into a body, so that the checks in server.ts never depend on how
// a request came.
import type { EventEmitter } from 'node:events'
import type { IncomingMessage, OutgoingHttpHeaders, Server as HttpServer } from 'node:http'
import {
  constants,
  createSecureServer,
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type SecureServerOptions,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2'
import type { Server as NetServer, Socket } from 'node:net'
import { promisify } from 'node:util'
import { gunzip, zstdDecompress } from 'node:zlib'
import { JSON_CONTENT_TYPE, decodeGetStreamHeadRequestJson, decodePushBatchRequestJson, encodeGetStreamHeadResponseJson, encodePushBatchResponseJson } from '../proto/connect-json.ts'
import { ConnectError, PROTO_CONTENT_TYPE } from '../proto/connect.ts'
import {
  decodeGetStreamHeadRequest,
  decodePushBatchRequest,
  encodeGetStreamHeadResponse,
  encodePushBatchResponse,
  type GetStreamHeadRequest,
  type PushBatchResponse,
  type SealedBatch,
  type WireLimits,
} from '../proto/wire.ts'
import { createServer as createHttpServer } from '../shared/node-http.ts'

export interface Codec {
  /** As metrics name it. */
  name: 'proto' | 'json'
  contentType: string
  decodePushBatchRequest(body: Uint8Array, limits: WireLimits): SealedBatch[]
  decodeGetStreamHeadRequest(body: Uint8Array): GetStreamHeadRequest
  encodePushBatchResponse(r: PushBatchResponse): Uint8Array
  encodeGetStreamHeadResponse(head: SealedBatch | undefined): Uint8Array
}

/** The binary codec: Connect's application/proto, and gRPC's only codec here. */
export const PROTO_CODEC: Codec = {
  name: 'proto',
  contentType: PROTO_CONTENT_TYPE,
  decodePushBatchRequest,
  decodeGetStreamHeadRequest,
  encodePushBatchResponse,
  encodeGetStreamHeadResponse,
}

const CODECS: readonly Codec[] = [
  PROTO_CODEC,
  {
    name: 'json',
    contentType: JSON_CONTENT_TYPE,
    decodePushBatchRequest: decodePushBatchRequestJson,
    decodeGetStreamHeadRequest: decodeGetStreamHeadRequestJson,
    encodePushBatchResponse: encodePushBatchResponseJson,
    encodeGetStreamHeadResponse: encodeGetStreamHeadResponseJson,
  },
]

/** In order of preference (zstd: faster and smaller, measured in agent/ship/sender.ts). */
const DECOMPRESS = { zstd: promisify(zstdDecompress), gzip: promisify(gunzip) }
export type BodyEncoding = 'identity' | keyof typeof DECOMPRESS
/** What an unsupported encoding is answered with (Connect's accept-encoding, gRPC's grpc-accept-encoding), preferred first. */
export const ACCEPT_ENCODING = Object.keys(DECOMPRESS).join(', ')

/** The encoding a content-encoding (or grpc-encoding) header names; undefined for one not supported. */
export function bodyEncoding(header: string | undefined): BodyEncoding | undefined {
  const encoding = (header ?? 'identity').trim().toLowerCase()
  return encoding === 'identity' || Object.hasOwn(DECOMPRESS, encoding) ? encoding as BodyEncoding : undefined
}

/** A body (or gRPC message) inflated up to `maxBytes`: a bomb stops there. */
export async function inflate(body: Buffer, encoding: BodyEncoding, maxBytes: number, what = 'body'): Promise<Buffer> {
  if (encoding === 'identity') {
    if (body.length > maxBytes) throw new ConnectError('resource_exhausted', `request ${what} of ${body.length} bytes is over the limit of ${maxBytes}`)
    return body
  }
  try {
    // A large output chunk: with zlib's default (16 KiB) a 4 MiB body takes hundreds of trips between the pool thread and the event loop.
    return await DECOMPRESS[encoding](body, { maxOutputLength: maxBytes, chunkSize: 1024 * 1024 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new ConnectError('resource_exhausted', `${encoding} ${what} inflates past the limit of ${maxBytes} bytes; send fewer batches per request`)
    }
    throw new ConnectError('invalid_argument', `request ${what} is not valid ${encoding} (${(err as Error).message})`)
  }
}

/** The content types a Connect unary request may have, for error messages. */
export const CONTENT_TYPES = CODECS.map((c) => c.contentType).join(' or ')

/** The media type of a Content-Type header, parameters (charset) left out. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';', 1)[0]!.trim().toLowerCase()
}

/** The Connect codec of a request by its Content-Type; undefined for any other (refused with 415). */
export function connectCodec(contentType: string | undefined): Codec | undefined {
  const type = mediaType(contentType)
  return CODECS.find((c) => c.contentType === type)
}

/** A request and its answer over HTTP/1.1 or HTTP/2 (node:http2's compatibility API has the same shape). */
export type Request = IncomingMessage | Http2ServerRequest
/** What the collector uses of an answer, which ServerResponse and Http2ServerResponse both have. */
export interface Response {
  writeHead(statusCode: number, headers: OutgoingHttpHeaders): { end(body?: string | Uint8Array): unknown }
  readonly headersSent: boolean
  readonly writableFinished: boolean
  readonly statusCode: number
  destroy(): void
  once(event: 'close' | 'finish', listener: () => void): unknown
  /** Sent after the body (gRPC's status). */
  addTrailers(headers: OutgoingHttpHeaders): void
}

export interface ListenerLimits {
  headersTimeoutMs: number
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
}

/**
 * Requests one HTTP/2 connection may have in flight. Each holds at most one request body (maxBodyBytes, and
 * its inflation) while it is read: with the per-address cap on connections, this bounds what one address holds.
 */
export const MAX_CONCURRENT_STREAMS = 16

const CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024

/** The first bytes of every HTTP/2 connection (RFC 9113 §3.4): what tells h2c with prior knowledge from HTTP/1.1. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

export interface Listener {
  /** The listening server: listen, address, close, maxConnections, and each TCP connection's 'connection'. */
  server: NetServer
  /** The servers that emit 'request' (one, or the HTTP/1.1 and the HTTP/2 one on plaintext). */
  requestSources: EventEmitter[]
  /** At shutdown: closes idle HTTP/1.1 connections, and sends every HTTP/2 one GOAWAY (its streams in flight finish). */
  closeIdle(): void
  /** Ends every connection now. */
  closeAll(): void
}

/**
 * HTTP/1.1 and HTTP/2 on one port. Under TLS, ALPN chooses (h2, http/1.1; a client that offers neither gets
 * HTTP/1.1). In plaintext a connection that opens with the HTTP/2 preface is HTTP/2 with prior knowledge
 * (h2c); anything else is HTTP/1.1. HTTP/1.1 keeps Node's header, request and keep-alive timeouts; HTTP/2
 * gets the same bounds per stream and per session here.
 */
export function createListener(tls: SecureServerOptions | undefined, limits: ListenerLimits, handle: (req: Request, res: Response) => void): Listener {
  const http1Options = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
  }
  // Flow-control windows of 1 MiB per stream and 8 MiB per connection (HTTP/2's default is 64 KiB each): with
  // the defaults, the agent's Sender pushing 4 MiB requests over h2 was 12 to 25% slower than over HTTP/1.1
  // (3 runs each, TLS on 127.0.0.1); with these, on par. Bodies are read as they arrive, so a window is
  // not memory held: at most what arrives after a refusal, until the stream is reset.
  const http2Options = { settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS, initialWindowSize: 1024 * 1024 } }
  const sessions = new Set<ServerHttp2Session>()
  const onSession = (session: ServerHttp2Session) => {
    sessions.add(session)
    session.once('localSettings', () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES))
    session.once('close', () => sessions.delete(session))
    // No frame for this long (no request, no body byte, no ping): the connection goes, as an idle HTTP/1.1 one does.
    session.setTimeout(Math.max(limits.keepAliveTimeoutMs, limits.headersTimeoutMs), () => session.close())
  }
  const onStream = (stream: ServerHttp2Stream) => {
    // HTTP/1.1's requestTimeout, per stream: the whole request must arrive within it (a slow sender is cut off).
    const timer = setTimeout(() => {
      if (!stream.readableEnded) stream.close(constants.NGHTTP2_CANCEL)
    }, limits.requestTimeoutMs)
    stream.once('close', () => clearTimeout(timer))
    stream.once('end', () => clearTimeout(timer))
  }
  /** Closing goes to both kinds of connection: the HTTP/1.1 server's own, and the HTTP/2 sessions. */
  const closers = (http1: Pick<HttpServer, 'closeIdleConnections' | 'closeAllConnections'>) => ({
    closeIdle: () => {
      http1.closeIdleConnections()
      for (const s of sessions) s.close()
    },
    closeAll: () => {
      http1.closeAllConnections()
      for (const s of sessions) s.destroy()
    },
  })
  if (tls) {
    const server = createSecureServer({ ...tls, ...http2Options, allowHTTP1: true }, handle)
    // With allowHTTP1 the server tracks its HTTP/1.1 connections as node:http's does (timeouts, closing
    // idle ones); @types/node does not know it.
    const http1 = Object.assign(server, http1Options) as unknown as Pick<HttpServer, 'closeIdleConnections' | 'closeAllConnections'>
    server.on('session', onSession)
    server.on('stream', onStream)
    return { server, requestSources: [server], ...closers(http1) }
  }
  const http1 = createHttpServer(http1Options, handle)
  const http2 = createHttp2Server(http2Options, handle)
  http2.on('session', onSession)
  http2.on('stream', onStream)
  // The HTTP/1.1 server listens (its timeouts are kept by its own connection tracking); its connection
  // handler runs only for connections that turn out to be HTTP/1.1.
  const [http1Connection] = http1.listeners('connection') as Array<(socket: Socket) => void>
  if (!http1Connection) throw new Error('node:http Server has no connection listener to hand HTTP/1.1 connections to')
  http1.removeAllListeners('connection')
  http1.on('connection', (socket: Socket) => {
    sniff(socket, limits.headersTimeoutMs, (h2) => {
      if (h2) http2.emit('connection', socket)
      else http1Connection.call(http1, socket)
    })
  })
  return { server: http1, requestSources: [http1, http2], ...closers(http1) }
}

/**
 * Reads a connection's first bytes until they match the HTTP/2 preface or cannot; then puts them back
 * and says which it is. A connection that sends too little within `timeoutMs` is closed.
 */
function sniff(socket: Socket, timeoutMs: number, then: (h2: boolean) => void): void {
  if (socket.destroyed) return
  let seen = Buffer.alloc(0)
  const timer = setTimeout(() => socket.destroy(), timeoutMs)
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk])
    const n = Math.min(seen.length, H2_PREFACE.length)
    const h2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n))
    if (h2 && seen.length < H2_PREFACE.length) return
    clearTimeout(timer)
    socket.off('data', onData)
    socket.off('close', onClose)
    socket.pause()
    socket.unshift(seen)
    then(h2)
    // Node's HTTP/1.1 parser and HTTP/2 session read from the stream from here on, the bytes put back first.
    process.nextTick(() => socket.resume())
  }
  const onClose = () => clearTimeout(timer)
  socket.on('data', onData)
  socket.once('close', onClose)
}

/**
 * For an answer sent before its request's body was read (a refusal over a limit): the headers that
 * make HTTP/1.1 close the connection after it, since the unread rest cannot be skipped; on HTTP/2
 * (which forbids that header) the stream alone is reset once the answer is out (RFC 9113 §8.1).
 * Not when the answer ends in trailers (gRPC): nghttp2 sends a reset ahead of frames still queued,
 * and the status would be lost; such a stream ends when its sender stops, or at the request timeout.
 */
export function stopReading(req: Request, trailers: boolean): Record<string, string> {
  if (req.httpVersionMajor !== 2) return { connection: 'close' }
  // The stream's own 'finish' (the answer is out); the response's comes only once the stream closes.
  if (!trailers) (req as Http2ServerRequest).stream.once('finish', () => (req as Http2ServerRequest).stream.close(constants.NGHTTP2_NO_ERROR))
  return {}
}
