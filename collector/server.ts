// The reference collector: a Connect unary endpoint that verifies every seal and
// the chain of each stream, and appends accepted batches to the store.
//
// Checks run cheapest first and before any work they guard: request shape and
// size, then per batch algorithm, key, signature (over the bytes as received,
// before decoding them), decoding, per-batch limits, the stream, and last the
// chain under the stream's lock.
import type { EventEmitter } from 'node:events'
import type { TLSSocket } from 'node:tls'
import type { KeyObject } from 'node:crypto'
import type { AddressInfo, Server, Socket } from 'node:net'
import { statfs } from 'node:fs/promises'
import { pino, type Logger } from 'pino'
import { ConnectError, type ConnectCode } from '../proto/connect.ts'
import {
  batchDigest,
  decodeBatch,
  decodeSealedBatch,
  GET_STREAM_HEAD_PATH,
  PUSH_BATCH_PATH,
  V1_SERVICE_PATH,
  WireError,
  WireLimitError,
  type Batch,
  type PushBatchResponse,
  type SealedBatch,
} from '../proto/wire.ts'
import { startObserveServer, type ObserveServer } from '../shared/observe-server.ts'
import { EventIndex, indexPath, IndexError } from './index.ts'
import { CollectorMetrics, procedureOf } from './metrics.ts'
import { answerGrpc, answerGrpcError, isGrpc, unframe } from './grpc.ts'
import { ACCEPT_ENCODING, bodyEncoding, connectCodec, CONTENT_TYPES, createListener, inflate, PROTO_CODEC, stopReading, type BodyEncoding, type Codec, type Request, type Response } from './transport.ts'
import { LiveIndexer } from './live-indexer.ts'
import { parseQuery, QUERY_PARAMS, QueryEngine, QueryError, SqliteIndexBackend, type IndexBackend, type QueryKind } from './query.ts'
import { openPostgresIndex } from './store/postgres-query.ts'
import { may, type Readers } from './readers.ts'
import { linkProblem, storedAlready, type ChainProblem } from './chain.ts'
import { checkKeyContinuity, checkSeal } from './seal.ts'
import { verifyStreamHeadRequest } from '../proto/signed-messages.ts'
import { TokenBucket } from '../shared/token-bucket.ts'
import { FileStore } from './store/file-store.ts'
import { openStore } from './store/open.ts'
import { isValidStreamId, STREAM_ID_PATTERN, StoreUnavailableError, type BatchStore, type StreamView } from './store/store.ts'

const MiB = 1024 * 1024

export interface CollectorLimits {
  /** Request body as received (compressed or not). */
  maxBodyBytes: number
  /** Request body after decompression (zstd, gzip): a bomb stops here. */
  maxDecompressedBytes: number
  maxBatchesPerRequest: number
  maxRecordsPerBatch: number
  /** Longest event line (the agent quarantines longer ones, 4 MiB by default). */
  maxLineBytes: number
  /** Time to receive a request's headers, and its whole body (slow senders). */
  headersTimeoutMs: number
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
  maxConnections: number
  /** Connections one remote address may hold at once: one client cannot take the whole table. */
  maxConnectionsPerAddress: number
  /** Per-stream token bucket: PushBatch requests per second, and the burst allowed. */
  streamRequestsPerSecond: number
  streamBurst: number
  /** Streams one key may hold: each node has its own key and stream (a rename or two fit under it). */
  maxStreamsPerKey: number
}

export const DEFAULT_LIMITS: Readonly<CollectorLimits> = Object.freeze({
  maxBodyBytes: 16 * MiB,
  maxDecompressedBytes: 64 * MiB,
  maxBatchesPerRequest: 64,
  maxRecordsPerBatch: 20_000,
  maxLineBytes: 16 * MiB,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 1024,
  maxConnectionsPerAddress: 64,
  streamRequestsPerSecond: 50,
  streamBurst: 200,
  maxStreamsPerKey: 4,
})

/** How far a GetStreamHead request's issue time may be from the collector's clock. */
const HEAD_REQUEST_SKEW_MS = 5 * 60_000

/** Bound on the token buckets kept: the least recently used stream's bucket goes first (it refills anyway). */
const MAX_BUCKETS = 100_000
/** With this share of maxConnections open, connections idle for IDLE_GRACE_MS are closed to make room. */
const NEAR_FULL = 0.9
const IDLE_GRACE_MS = 1000
/** Per-code rejection warnings at most this often, so that a flood cannot flood the log. */
const WARN_EVERY_MS = 10_000

export interface TlsOptions {
  cert: string | Buffer
  key: string | Buffer
  /** CA bundle that client certificates must chain to. */
  ca?: string | Buffer
  requireClientCert?: boolean
  /**
   * With client certificates on, a stream may be written or read only by a certificate naming it
   * (its subject CN or a DNS name in its subjectAltName equals the stream id). Off only for a PKI
   * that gives every node the same certificate: then the signing key alone binds the stream.
   */
  sharedClientCert?: boolean
}

export interface CollectorOptions {
  listen: { host: string; port: number }
  /** A directory (the file store), or a postgres:// URL. */
  storeDir: string
  trustedKeys: Map<string, KeyObject>
  tls?: TlsOptions
  limits?: Partial<CollectorLimits>
  logger?: Logger
  /** Segment size of the store (tests use small ones). */
  segmentBytes?: number
  /** Keep the query index (default true): SQLite beside a directory, tables in a database; off, nothing is indexed and the query API answers 404. */
  index?: boolean
  /** Who may use the query API (GET /v1/events, /v1/findings); without readers it answers 404. */
  readers?: Readers
  /**
   * HOST:PORT of /metrics (and /livez, /readyz), plain HTTP, apart from the listen address: a scraper
   * needs no client certificate there, and a flood that fills the collector's connections does not
   * blind the scrape that would show it. Without it, no metrics are served.
   */
  metricsListen?: string
}

const QUERY_PATHS: Readonly<Record<string, QueryKind>> = { '/v1/events': 'events', '/v1/findings': 'findings', '/v1/finding-groups': 'groups' }

export interface CollectorStats {
  requests: number
  acceptedBatches: number
  duplicateBatches: number
  rejected: Partial<Record<ConnectCode, number>>
}

export interface Collector {
  url: string
  port: number
  store: BatchStore
  /** Undefined when the index is off. */
  indexer: LiveIndexer | undefined
  /** Where /metrics is served; undefined without metricsListen. */
  metricsUrl: string | undefined
  stats(): CollectorStats
  close(): Promise<void>
}

export async function startCollector(options: CollectorOptions): Promise<Collector> {
  const limits: CollectorLimits = { ...DEFAULT_LIMITS, ...options.limits }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`limits.${name} must be a positive number, got ${value}`)
  }
  const log = options.logger ?? pino({ level: 'silent' })
  const store = await openStore(options.storeDir, { logger: log, ...(options.segmentBytes ? { segmentBytes: options.segmentBytes } : {}), ...(options.index === false ? { index: false } : {}) })
  let indexer: LiveIndexer | undefined
  /** The query API's connection: read-only, beside the indexer's worker, which writes. */
  let reader: EventIndex | undefined
  /** What the query API reads: the SQLite file beside a directory, or the index tables of a database. */
  let index: IndexBackend | undefined
  // A PostgreSQL store writes its index rows in each batch's insert transaction (store/postgres-index.ts): only the reading side is here.
  if (options.index !== false && !(store instanceof FileStore)) {
    try {
      index = await openPostgresIndex(options.storeDir, log)
    } catch (err) {
      await store.close()
      throw err
    }
  }
  if (options.index !== false && store instanceof FileStore) {
    try {
      const live = new LiveIndexer(indexPath(options.storeDir), store, log)
      indexer = live
      // Indexed by the index's worker thread, beside the ack: queryable milliseconds later. `entry` is handed over (transferred).
      store.onAppend = (streamId, sequence, at, entry) => live.afterAppend(streamId, sequence, at, entry)
      await live.start()
      // Opened after the worker has created the file and its tables.
      reader = new EventIndex(indexPath(options.storeDir), { readOnly: true })
    } catch (err) {
      await indexer?.close()
      await store.close()
      if (err instanceof IndexError) throw err
      throw new IndexError(`cannot open the index ${indexPath(options.storeDir)}: ${(err as Error).message}; move it away (or run 'auditrail collector reindex') and start again`)
    }
    index = new SqliteIndexBackend(reader, options.storeDir)
  }
  const queries = index && new QueryEngine(index)
  const stats: CollectorStats = { requests: 0, acceptedBatches: 0, duplicateBatches: 0, rejected: {} }
  const metrics = new CollectorMetrics({
    streams: async () => (await store.streams()).length,
    lastBatchAges: () => store.lastBatchAges(),
    openConnections: () => connections.size,
    unready: () => store.unready(),
    ...(store instanceof FileStore ? { freeBytes: async () => { const fs = await statfs(store.dir); return fs.bavail * fs.bsize } } : {}),
    ...(indexer && reader && store instanceof FileStore ? { indexLag: indexLagOf(indexer, reader, store) } : {}),
  })
  if (indexer) indexer.onIndexed = (ms, fromSegments) => metrics.indexDuration.observe({ source: fromSegments ? 'segments' : 'live' }, ms / 1000)
  /** The Connect code each refused request was answered with, for its metrics. */
  const refusals = new WeakMap<Response, ConnectCode>()
  /** Requests in the gRPC protocol: their refusals are gRPC statuses, not Connect error bodies. */
  const grpcCalls = new WeakSet<Response>()
  const buckets = new TokenBuckets(limits.streamRequestsPerSecond, limits.streamBurst)
  /** By kind of refusal: a fixed, small set of keys. */
  const lastWarned = new Map<string, { at: number; suppressed: number }>()
  let closing = false

  const listener = createListener(options.tls ? {
    cert: options.tls.cert,
    key: options.tls.key,
    ...(options.tls.ca ? { ca: options.tls.ca } : {}),
    requestCert: options.tls.requireClientCert === true,
    rejectUnauthorized: options.tls.requireClientCert === true,
    minVersion: 'TLSv1.2',
  } : undefined, limits, handle)
  const server = listener.server
  server.maxConnections = limits.maxConnections
  const connections = new ConnectionTable(server, listener.requestSources, limits, (address) => {
    metrics.connectionsRefused.inc()
    warnThrottled('connections per address', 'refused a connection: its address holds too many', { remote: address, limit: limits.maxConnectionsPerAddress })
  })

  function handle(req: Request, res: Response): void {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (path !== '/livez' && path !== '/readyz' && !Object.hasOwn(QUERY_PATHS, path ?? '')) {
      const started = performance.now()
      res.once('close', () => {
        const code = refusals.get(res) ?? (res.writableFinished && res.statusCode === 200 ? 'ok' : 'canceled')
        metrics.request(procedureOf(path), req.headers['content-type'], code, req.httpVersionMajor, (performance.now() - started) / 1000)
      })
    }
    route(req, res).catch((err: unknown) => {
      log.error({ err: (err as Error).message, path: req.url }, 'request failed unexpectedly')
      reject(res, new ConnectError('internal', 'internal error'))
    })
  }

  async function route(req: Request, res: Response): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (path === '/livez' || path === '/readyz') {
      const problem = path === '/livez' ? undefined : closing ? 'closing' : await store.unready()
      res.writeHead(problem ? 503 : 200, { 'content-type': 'text/plain' }).end(problem ? `${problem}\n` : 'ok\n')
      return
    }
    const queryKind = path !== undefined ? QUERY_PATHS[path] : undefined
    if (queryKind) return query(req, res, queryKind)
    // From here on every answer, refusals included, is in the protocol the request speaks.
    const grpc = isGrpc(req.headers['content-type'])
    if (grpc) grpcCalls.add(res)
    if (path?.startsWith(`${V1_SERVICE_PATH}/`)) {
      return reject(res, new ConnectError('unimplemented', `${path.slice(0, 200)} is wire contract version 1; this collector speaks version 2 (${PUSH_BATCH_PATH}), whose seals sign the batch digest and whose stream heads need the stream's key: upgrade the agent`), 404)
    }
    if (path !== PUSH_BATCH_PATH && path !== GET_STREAM_HEAD_PATH) {
      return reject(res, new ConnectError('unimplemented', `no procedure at ${JSON.stringify(path?.slice(0, 200))}; this collector serves ${PUSH_BATCH_PATH} and ${GET_STREAM_HEAD_PATH}`), 404)
    }
    if (req.method !== 'POST') {
      return reject(res, new ConnectError('unimplemented', `${req.method} is not supported; Connect unary calls are POST`), 405, { allow: 'POST' })
    }
    stats.requests++
    const codec = grpc ? PROTO_CODEC : connectCodec(req.headers['content-type'])
    if (!codec) {
      return reject(res, new ConnectError('unimplemented', `content-type ${JSON.stringify((req.headers['content-type'] ?? '').slice(0, 100))} is not supported; send ${CONTENT_TYPES}`), 415)
    }
    // gRPC compresses the message inside the body (grpc-encoding), not the body.
    const encoding = grpc ? 'identity' : bodyEncoding(req.headers['content-encoding'])
    if (!encoding) {
      return reject(res, new ConnectError('unimplemented', `content-encoding ${JSON.stringify((req.headers['content-encoding'] ?? '').slice(0, 64))} is not supported; send zstd, gzip or identity`), undefined, { 'accept-encoding': ACCEPT_ENCODING })
    }
    if (closing) return reject(res, new ConnectError('unavailable', 'the collector is shutting down; retry'))
    try {
      const received = await readBody(req, encoding, limits, (n) => metrics.receivedBytes.inc(n))
      const body = grpc ? await unframe(received, req.headers['grpc-encoding'] as string | undefined, limits.maxDecompressedBytes) : received
      const peer = certificateNames(req)
      const answer = path === PUSH_BATCH_PATH ? await pushBatch(body, codec, peer) : await getStreamHead(body, codec, peer)
      if (grpc) answerGrpc(res, answer)
      else res.writeHead(200, { 'content-type': codec.contentType, 'content-length': answer.length }).end(answer)
    } catch (err) {
      // A body left unread (over a limit) is not drained: the connection (HTTP/2: the stream) closes after the answer.
      const close = req.complete ? {} : stopReading(req, grpc)
      if (err instanceof RateLimited) return reject(res, err.error, undefined, { ...close, 'retry-after': String(err.retryAfterSeconds) })
      if (err instanceof ConnectError) return reject(res, err, undefined, close)
      if (err instanceof WireError) return reject(res, new ConnectError(err instanceof WireLimitError ? 'resource_exhausted' : 'invalid_argument', err.message), undefined, close)
      throw err
    }
  }

  async function pushBatch(body: Buffer, codec: Codec, peer: CertificateNames): Promise<Uint8Array> {
    const sealed = codec.decodePushBatchRequest(body, limits)
    if (sealed.length === 0) throw new ConnectError('invalid_argument', 'request.batches: empty; send at least one SealedBatch')
    // A request stops at its first refused batch: that one is counted.
    try {
      return codec.encodePushBatchResponse(await pushBatches(sealed, peer))
    } catch (err) {
      if (err instanceof RateLimited || err instanceof ConnectError || err instanceof WireError) metrics.batchRefused(err, err instanceof RateLimited)
      throw err
    }
  }

  async function pushBatches(sealed: SealedBatch[], peer: CertificateNames): Promise<PushBatchResponse> {
    const first = authenticate(sealed[0]!, 0)
    const streamId = first.batch.streamId
    checkPeerNamesStream(peer, streamId)
    let accepted = 0
    // The stream's rate is charged by the first batch that is new: re-sends of what is stored (a replayed
    // head, an agent's retry) cost no tokens, so that nobody can starve a stream by replaying it.
    let charged = false
    try {
      for (let i = 0; i < sealed.length; i++) {
        const { batch, digest } = i === 0 ? first : authenticate(sealed[i]!, i)
        if (batch.streamId !== streamId) {
          throw new ConnectError('invalid_argument', `request.batches[${i}]: stream ${JSON.stringify(batch.streamId)} differs from ${JSON.stringify(streamId)}; one stream per request`)
        }
        // The chain check runs inside the store's append, against the stream as stored under its lock:
        // another collector on the same database may have moved the head since this request began.
        const checkChain = async (view: StreamView): Promise<'append' | 'stored'> => {
          if (await isStored(view, streamId, batch, digest, i)) return 'stored'
          await checkKeyBinding(view, streamId, batch, sealed[i]!, i)
          if (!charged) {
            const wait = buckets.take(streamId)
            if (wait > 0) {
              throw new RateLimited(new ConnectError('resource_exhausted', `stream ${streamId} is over its rate of ${limits.streamRequestsPerSecond} requests per second; retry after ${wait} s`), wait)
            }
            charged = true
          }
          checkLink(view, streamId, batch, i)
          return 'append'
        }
        const started = performance.now()
        const outcome = await store.append(streamId, { batch, sealed: sealed[i]!, digest }, async (view) => {
          const checking = performance.now()
          try {
            return await checkChain(view)
          } finally {
            metrics.verifyDuration.observe({ check: 'chain' }, (performance.now() - checking) / 1000)
          }
        }).catch((err: unknown) => {
          if (err instanceof ConnectError || err instanceof RateLimited) throw err
          log.error({ stream: streamId, sequence: batch.sequence, err: (err as Error).message }, 'store append failed')
          throw new ConnectError('unavailable', `the collector could not store sequence ${batch.sequence}: ${(err as Error).message}`)
        })
        if (outcome === 'stored') {
          stats.duplicateBatches++
          metrics.batchesDuplicate.inc()
          continue
        }
        stats.acceptedBatches++
        metrics.batchStored(batch, sealed[i]!.batch.length, (performance.now() - started) / 1000)
        accepted++
      }
    } catch (err) {
      if (accepted > 0 && (err instanceof ConnectError || err instanceof WireError)) {
        const code = err instanceof ConnectError ? err.code : 'invalid_argument'
        const head = await store.head(streamId).catch(() => undefined)
        throw new ConnectError(code, `${err.message} (the ${accepted} batch(es) before it in this request were accepted${head ? `; stream head is ${head.sequence}` : ''})`)
      }
      throw err
    }
    return { streamId, acknowledgedSequence: await storedHead(streamId) }
  }

  /** The head as stored now; a store that cannot say is unavailable (the batches are stored: a retry is acknowledged). */
  async function storedHead(streamId: string): Promise<number> {
    try {
      return (await store.head(streamId))?.sequence ?? 0
    } catch (err) {
      throw new ConnectError('unavailable', `the collector could not read the head of stream ${streamId}: ${(err as Error).message}; retry`)
    }
  }

  /** Signature first, over the bytes as received; only then are they decoded. */
  function authenticate(sealed: SealedBatch, i: number): { batch: Batch; digest: Buffer } {
    const started = performance.now()
    try {
      return checkSealAndDecode(sealed, i)
    } finally {
      metrics.verifyDuration.observe({ check: 'seal' }, (performance.now() - started) / 1000)
    }
  }

  function checkSealAndDecode(sealed: SealedBatch, i: number): { batch: Batch; digest: Buffer } {
    const field = `request.batches[${i}]`
    const digest = batchDigest(sealed.batch)
    const problem = checkSeal(sealed, digest, options.trustedKeys)
    if (problem) throw new ConnectError(problem.code, `${field}.${problem.field}: ${problem.reason}`)
    let batch: Batch
    try {
      batch = decodeBatch(sealed.batch, limits)
    } catch (err) {
      if (err instanceof WireError) throw new ConnectError(err instanceof WireLimitError ? 'resource_exhausted' : 'invalid_argument', `${field}.${err.message}`)
      throw err
    }
    if (!isValidStreamId(batch.streamId)) {
      throw new ConnectError('invalid_argument', `${field}.batch.stream_id: ${JSON.stringify(batch.streamId.slice(0, 64))} does not match ${STREAM_ID_PATTERN}`)
    }
    const long = batch.records.findIndex((r) => r.line !== undefined && r.line.length > limits.maxLineBytes)
    if (long >= 0) {
      throw new ConnectError('resource_exhausted', `${field}.batch.records[${long}].line: ${batch.records[long]!.line!.length} bytes, over the limit of ${limits.maxLineBytes}; lower the agent's maxLineBytes (longer lines go to quarantine)`)
    }
    return { batch, digest }
  }

  /** A batch the stream already holds (same sequence, same digest) is acknowledged again; a different one is a fork. */
  async function isStored(view: StreamView, streamId: string, batch: Batch, digest: Buffer, i: number): Promise<boolean> {
    const verdict = await storedAlready(view, streamId, batch, digest)
    if (typeof verdict === 'object') throw chainError(verdict, i)
    return verdict === 'stored'
  }

  /** The stream's key (the key of its head) signs what continues it; a new stream counts against its key's quota. */
  async function checkKeyBinding(view: StreamView, streamId: string, batch: Batch, sealed: SealedBatch, i: number): Promise<void> {
    const head = view.head
    const problem = checkKeyContinuity(batch, sealed, head?.keyId, options.trustedKeys)
    if (problem) throw new ConnectError('permission_denied', `request.batches[${i}]: ${problem}`)
    if (!head && (await view.streamsOfKey(sealed.keyId)) >= limits.maxStreamsPerKey) {
      throw new ConnectError('resource_exhausted', `request.batches[${i}]: key ${sealed.keyId} already holds ${limits.maxStreamsPerKey} streams, the limit per key; give each node its own key (auditrail keygen), or raise maxStreamsPerKey`)
    }
    if (head && head.keyId !== sealed.keyId) {
      log.warn({ stream: streamId, sequence: batch.sequence, from: head.keyId, to: sealed.keyId }, 'stream key rotated: the previous key endorsed the new one')
    }
  }

  function checkLink(view: StreamView, streamId: string, batch: Batch, i: number): void {
    const problem = linkProblem(view, streamId, batch)
    if (problem) throw chainError(problem, i)
  }

  function chainError(problem: ChainProblem, i: number): ConnectError {
    return new ConnectError(problem.code, `request.batches[${i}]${problem.field}: ${problem.reason}`)
  }

  /** With per-node client certificates, the certificate must name the stream it writes or reads. */
  function checkPeerNamesStream(peer: CertificateNames, streamId: string): void {
    if (!peer || options.tls?.sharedClientCert) return
    if (!peer.includes(streamId)) {
      throw new ConnectError('permission_denied', `stream ${streamId} is not named by the client certificate (it names ${peer.slice(0, 4).map((n) => JSON.stringify(n.slice(0, 64))).join(', ') || 'nothing'}); issue each node a certificate whose CN or DNS name is its stream id, or start the collector with --shared-client-cert`)
    }
  }

  /**
   * The read path: GET only, bearer token of a reader whose role allows the kind,
   * then the filters. Nothing here writes. Every answered query is logged with the
   * reader's name (never the token), the parameters, and the number of results.
   */
  async function query(req: Request, res: Response, kind: QueryKind): Promise<void> {
    const fail = (status: number, message: string, headers: Record<string, string> = {}) => {
      const body = JSON.stringify({ error: message })
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers }).end(body)
    }
    if (!options.readers || !queries) {
      return fail(404, !queries
        ? 'the query API is off because this collector keeps no index; start it without --no-index'
        : 'the query API is off; start the collector with --readers FILE (lines \'ROLE sha256:HEX NAME\', see \'auditrail collector token\')')
    }
    if (req.method !== 'GET') return fail(405, `${req.method} is not supported; the query API is read-only: use GET`, { allow: 'GET' })
    const url = new URL(req.url ?? '/', 'http://collector')
    const auth = req.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth)
    if (!m) {
      warnThrottled('query unauthenticated', 'query refused: not authenticated', { path: url.pathname, remote: req.socket.remoteAddress, reason: auth ? 'malformed authorization header' : 'no token' })
      return fail(401, 'missing bearer token: send \'Authorization: Bearer TOKEN\' with a token listed (as its SHA-256) in the collector\'s readers file', { 'www-authenticate': 'Bearer realm="auditrail"' })
    }
    const reader = options.readers.identify(m[1]!)
    if (!reader) {
      warnThrottled('query unauthenticated', 'query refused: not authenticated', { path: url.pathname, remote: req.socket.remoteAddress, reason: 'unknown token' })
      return fail(401, 'unknown bearer token: its SHA-256 is not in the collector\'s readers file', { 'www-authenticate': 'Bearer realm="auditrail", error="invalid_token"' })
    }
    if (!may(reader, kind === 'groups' ? 'findings' : kind)) {
      log.warn({ reader: reader.name, role: reader.role, path: url.pathname }, 'query refused: role does not allow it')
      return fail(403, `reader ${reader.name} has role ${reader.role}, which may not read ${kind}; the auditor role may`)
    }
    // Known filters only: anything else (an access_token=...) may be a secret and is named in the error, by name.
    const params = Object.fromEntries([...url.searchParams].filter(([k]) => QUERY_PARAMS.includes(k)).map(([k, v]) => [k, v.slice(0, 256)]))
    const started = performance.now()
    try {
      const q = parseQuery(kind, url.searchParams)
      const answer = await queries.answer(q)
      const body = answer.lines.join('')
      res.writeHead(200, {
        'content-type': 'application/x-ndjson',
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
        ...(answer.nextCursor ? { 'auditrail-next-cursor': answer.nextCursor } : {}),
      }).end(body)
      log.info({ reader: reader.name, role: reader.role, kind, params, results: answer.lines.length, more: answer.nextCursor !== undefined, ms: Math.round(performance.now() - started) }, 'query')
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        log.warn({ reader: reader.name, kind, err: err.message }, 'query failed: the index is unreachable')
        return fail(503, `the index cannot be read now (${err.message}); retry`, { 'retry-after': '1' })
      }
      if (!(err instanceof QueryError)) throw err
      log.info({ reader: reader.name, role: reader.role, kind, params, error: err.message }, 'query rejected: bad parameter')
      return fail(400, `bad parameter ${err.message}`)
    }
  }

  /**
   * Only a caller that signs for the stream learns anything about it: the stream's own key (or, for a
   * stream not stored yet, a trusted key that could create it), over a request issued within minutes.
   * Every refusal says the same for a stored and an unknown stream.
   */
  async function getStreamHead(body: Buffer, codec: Codec, peer: CertificateNames): Promise<Uint8Array> {
    const request = codec.decodeGetStreamHeadRequest(body)
    const { streamId, keyId } = request
    if (!isValidStreamId(streamId)) {
      throw new ConnectError('invalid_argument', `request.stream_id: ${JSON.stringify(streamId.slice(0, 64))} does not match ${STREAM_ID_PATTERN}`)
    }
    checkPeerNamesStream(peer, streamId)
    const key = options.trustedKeys.get(keyId)
    if (!key) throw new ConnectError('unauthenticated', `request.key_id: ${JSON.stringify(keyId.slice(0, 64))} is not a trusted key; sign the request with the stream's key`)
    const skew = Math.abs(Date.now() - request.issuedUnixMs)
    if (skew > HEAD_REQUEST_SKEW_MS) {
      throw new ConnectError('unauthenticated', `request.issued_unix_ms: ${skew} ms away from the collector's clock, more than ${HEAD_REQUEST_SKEW_MS}; check the node's clock (NTP)`)
    }
    if (!verifyStreamHeadRequest(streamId, request.issuedUnixMs, request.signature, key)) {
      throw new ConnectError('unauthenticated', `request.signature: does not verify with key ${keyId}`)
    }
    let head
    try {
      head = await store.head(streamId)
    } catch (err) {
      throw new ConnectError('unavailable', `the collector could not read the head of stream ${streamId}: ${(err as Error).message}; retry`)
    }
    if (head && head.keyId !== keyId) {
      throw new ConnectError('permission_denied', `key ${keyId} may not read stream ${streamId}: a stream's head is told only to its own key`)
    }
    return codec.encodeGetStreamHeadResponse(head ? decodeSealedBatch(head.sealed) : undefined)
  }

  function reject(res: Response, error: ConnectError, status = error.httpStatus, headers: Record<string, string> = {}): void {
    stats.rejected[error.code] = (stats.rejected[error.code] ?? 0) + 1
    refusals.set(res, error.code)
    warnThrottled(error.code, `rejected a request: ${error.message}`, { code: error.code })
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (grpcCalls.has(res)) return answerGrpcError(res, error, headers)
    const body = JSON.stringify(error.toJSON())
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers }).end(body)
  }

  /** One warning per kind of refusal at most every WARN_EVERY_MS; the next says how many were left out. */
  function warnThrottled(kind: string, message: string, fields: Record<string, unknown>): void {
    const now = Date.now()
    const last = lastWarned.get(kind)
    if (last && now - last.at < WARN_EVERY_MS) {
      last.suppressed++
      return
    }
    log.warn({ ...fields, suppressedSinceLast: last?.suppressed ?? 0 }, message)
    lastWarned.set(kind, { at: now, suppressed: 0 })
  }

  await new Promise<void>((resolve, rejectListen) => {
    server.once('error', rejectListen)
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', rejectListen)
      resolve()
    })
  }).catch(async (err: unknown) => {
    await closeIndexAndStore()
    throw err
  })
  let observe: ObserveServer | undefined
  if (options.metricsListen) {
    observe = await startObserveServer({ listen: options.metricsListen, registry: metrics.registry, ready: () => !closing, unready: () => store.unready() }).catch(async (err: unknown) => {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await closeIndexAndStore()
      throw err
    })
  }

  async function closeIndexAndStore(): Promise<void> {
    // The reader first: the writer, closing last, checkpoints the WAL into the file.
    await index?.close()
    await indexer?.close()
    await store.close()
  }
  const port = (server.address() as AddressInfo).port
  const host = options.listen.host.includes(':') ? `[${options.listen.host}]` : options.listen.host
  const url = `${options.tls ? 'https' : 'http'}://${host}:${port}`
  log.info({ url, metrics: observe?.url, store: store.name, trustedKeys: [...options.trustedKeys.keys()], limits }, 'collector listening')

  return {
    url,
    port,
    store,
    indexer,
    metricsUrl: observe?.url,
    stats: () => ({ ...stats, rejected: { ...stats.rejected } }),
    async close(graceMs = 5000) {
      if (closing) return
      closing = true
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      listener.closeIdle()
      const timer = setTimeout(() => listener.closeAll(), graceMs)
      await closed
      clearTimeout(timer)
      // A request cut off by the grace period may still be appending: its entry reaches the indexer before it closes.
      if (store instanceof FileStore) await store.settled()
      await observe?.close()
      await closeIndexAndStore()
      log.info({ stats }, 'collector closed')
    },
  }
}

class RateLimited extends Error {
  readonly error: ConnectError
  readonly retryAfterSeconds: number
  constructor(error: ConnectError, retryAfterSeconds: number) {
    super(error.message)
    this.error = error
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/** Reads a request body within the size limits; a compressed body is inflated only up to the decompressed limit. */
async function readBody(req: Request, encoding: BodyEncoding, limits: CollectorLimits, onReceived: (bytes: number) => void): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limits.maxBodyBytes) {
    throw new ConnectError('resource_exhausted', `request body of ${declared} bytes is over the limit of ${limits.maxBodyBytes}; send fewer batches per request`)
  }
  const chunks: Buffer[] = []
  let total = 0
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      total += chunk.length
      onReceived(chunk.length)
      if (total > limits.maxBodyBytes) {
        throw new ConnectError('resource_exhausted', `request body is over the limit of ${limits.maxBodyBytes} bytes; send fewer batches per request`)
      }
      chunks.push(chunk)
    }
  } catch (err) {
    if (err instanceof ConnectError) throw err
    // The client went away mid-body: a refusal like the others (counted, its warnings throttled), not a failure of ours.
    throw new ConnectError('canceled', `the client closed the connection after ${total} bytes of the body (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  return inflate(Buffer.concat(chunks, total), encoding, limits.maxDecompressedBytes)
}

/**
 * The open connections by remote address, and since when each has been idle (no request in flight).
 * A connection past its address's share is closed at once; when the table is nearly full (or full:
 * Node then drops new ones), connections idle for a while are closed, so that an agent that needs a
 * new connection gets one. Node's own closeIdleConnections would also close the one just accepted.
 */
class ConnectionTable {
  readonly #byAddress = new Map<string, number>()
  /** By "address:port", which the TCP socket and the TLS socket over it share. */
  readonly #open = new Map<string, { socket: Socket; inFlight: number; idleSince: number | undefined }>()

  constructor(server: Server, requestSources: EventEmitter[], limits: CollectorLimits, onRefused: (address: string) => void) {
    server.on('connection', (socket: Socket) => {
      const address = socket.remoteAddress ?? ''
      const held = this.#byAddress.get(address) ?? 0
      if (held >= limits.maxConnectionsPerAddress) {
        onRefused(address)
        socket.destroy()
        return
      }
      if (this.#open.size >= limits.maxConnections * NEAR_FULL) this.closeIdle(IDLE_GRACE_MS)
      const key = `${address}:${socket.remotePort}`
      this.#byAddress.set(address, held + 1)
      this.#open.set(key, { socket, inFlight: 0, idleSince: performance.now() })
      socket.once('close', () => {
        this.#open.delete(key)
        const left = (this.#byAddress.get(address) ?? 1) - 1
        if (left > 0) this.#byAddress.set(address, left)
        else this.#byAddress.delete(address)
      })
    })
    server.on('drop', () => this.closeIdle(IDLE_GRACE_MS))
    for (const source of requestSources) source.on('request', (req: Request, res: Response) => {
      const entry = this.#open.get(`${req.socket.remoteAddress}:${req.socket.remotePort}`)
      if (!entry) return
      // An HTTP/2 connection carries several requests at once: idle when the last one is answered.
      entry.inFlight++
      entry.idleSince = undefined
      res.once('close', () => {
        if (--entry.inFlight === 0) entry.idleSince = performance.now()
      })
    })
  }

  get size(): number {
    return this.#open.size
  }

  /** Closes the connections idle for at least `graceMs`. */
  closeIdle(graceMs: number): void {
    const now = performance.now()
    for (const { socket, idleSince } of this.#open.values()) {
      if (idleSince !== undefined && now - idleSince >= graceMs) socket.destroy()
    }
  }
}

/** Per-stream token buckets (the least recently used dropped past MAX_BUCKETS); `take` answers 0 when allowed, else the seconds to wait. */
class TokenBuckets {
  readonly #limit: { perSecond: number; burst: number }
  readonly #buckets = new Map<string, TokenBucket>()

  constructor(perSecond: number, burst: number) {
    this.#limit = { perSecond, burst }
  }

  take(key: string): number {
    const now = performance.now()
    const bucket = this.#buckets.get(key) ?? new TokenBucket(this.#limit, now)
    this.#buckets.delete(key) // re-inserted below: Map order is recency
    this.#buckets.set(key, bucket)
    if (this.#buckets.size > MAX_BUCKETS) this.#buckets.delete(this.#buckets.keys().next().value!)
    return bucket.take(now) ? 0 : Math.max(1, Math.ceil(bucket.waitMs(now) / 1000))
  }
}

/** The names a verified client certificate gives its holder (subject CN, DNS subjectAltNames); undefined without one. */
type CertificateNames = string[] | undefined

function certificateNames(req: Request): CertificateNames {
  const socket = req.socket as Partial<TLSSocket>
  if (!socket.encrypted || !socket.authorized || typeof socket.getPeerCertificate !== 'function') return undefined
  const cert = socket.getPeerCertificate()
  if (!cert || Object.keys(cert).length === 0) return undefined
  const names: string[] = []
  const cn = cert.subject?.CN
  if (typeof cn === 'string') names.push(cn)
  else if (Array.isArray(cn)) names.push(...(cn as string[]))
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const m = /^\s*DNS:(.+)$/.exec(part)
    if (m) names.push(m[1]!.trim())
  }
  return names
}

/**
 * The index's lag, read when scraped: batches from each stream's head and the index's indexed sequence
 * (one indexed row per stream: a few ms for thousands of streams), time from the indexer.
 */
function indexLagOf(indexer: LiveIndexer, reader: EventIndex, store: FileStore): () => { batches: number; seconds: number } {
  return () => {
    let batches = 0
    for (const [stream, head] of Object.entries(store.headSequences())) batches += Math.max(0, head - reader.indexedSequence(stream))
    return { batches, seconds: indexer.lagSeconds() }
  }
}
