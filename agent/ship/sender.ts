// Ships sealed batches to the collector, in order, one request at a time, and
// forgets a batch only when the collector has acknowledged its sequence
// number. Every failure is retried (capped exponential backoff with full
// jitter, Retry-After honoured): a batch is never skipped. While too many
// bytes wait for an acknowledgement, `waitForRoom` holds the tailer back.
// Each request goes to the collector `CollectorChoice` names, and its outcome
// goes back to it (failover between several collectors, agent/ship/collectors.ts).
import { promisify } from 'node:util'
import { gzip as gzipCallback } from 'node:zlib'
import { Agent, request, type Dispatcher } from 'undici'
import { ConnectError, parseConnectError, PROTO_CONTENT_TYPE } from '../../proto/connect.ts'
import {
  decodeGetStreamHeadResponse,
  decodePushBatchResponse,
  encodeGetStreamHeadRequest,
  encodePushBatchRequest,
  GET_STREAM_HEAD_PATH,
  PUSH_BATCH_PATH,
  type SealedBatch,
} from '../../proto/wire.ts'
import { signStreamHeadRequest } from '../../proto/signed-messages.ts'
import type { CollectorChoice, CollectorSwitch } from './collectors.ts'
import type { SealedItem } from './sealer.ts'
import type { SigningKey } from './signing-key.ts'
import { ZstdFrames } from './zstd-frames.ts'

const gzip = promisify(gzipCallback)

/** How request bodies are compressed (the Content-Encoding). */
export type RequestCompression = 'zstd' | 'gzip' | 'none'

/**
 * Whether HTTP/2 is used (collector.http2). Under TLS, ALPN decides: `auto` and `always` offer h2 and
 * HTTP/1.1, `never` HTTP/1.1 alone. In plaintext nothing negotiates: `always` speaks h2c with prior
 * knowledge (the collector tells it by its preface), `auto` and `never` HTTP/1.1.
 */
export type Http2Mode = 'auto' | 'always' | 'never'

// Levels by measurement (4 MiB requests of generated audit lines, one core): zstd 1 compresses
// at 744 MB/s to 1/11.4, gzip 1 at 247 MB/s to 1/6.9 (gzip 6: 122 MB/s, 1/9.9). Higher zstd
// levels gained almost nothing (level 3: 586 MB/s, 1/11.6).
// The output chunk is large: with zlib's default (16 KiB) a request bounced between the pool thread
// and the busy main thread a few dozen times, measured at 114 ms per request against a few ms of work.
const CHUNK_BYTES = 1024 * 1024
/**
 * The largest answer read from a collector: a stream head is one batch (the collector takes at most
 * 16 MiB per request), an acknowledgement a few bytes. A bigger body is refused while it arrives.
 */
export const MAX_RESPONSE_BYTES = 20 * 1024 * 1024
/** Bodies up to this size are sent as they are: compressing them would save next to nothing. */
const MIN_COMPRESSED_BYTES = 1024
const ZSTD_LEVEL = 1
const gzipBody = (body: Uint8Array) => gzip(body, { chunkSize: CHUNK_BYTES, level: 1 })

export interface SenderOptions {
  /** The collectors' base URLs (e.g. https://collector.example:8443) and which one a request goes to. */
  collectors: CollectorChoice
  streamId: string
  dispatcher: Dispatcher
  timeoutMs: number
  maxUnackedBytes: number
  maxBatchesPerRequest: number
  maxRequestBytes: number
  retryInitialMs: number
  retryMaxMs: number
  compression: RequestCompression
  onAck: (last: SealedItem, acknowledged: SealedItem[], latencyMs: number) => Promise<void> | void
  onFailure?: (err: SendError, attempt: number, delayMs: number) => void
  /** The agent moved to another collector (or back to the preferred one). */
  onSwitch?: (change: CollectorSwitch) => void
}

/** Why a request failed: `reason` is a short label for metrics. */
export class SendError extends Error {
  readonly reason: string
  readonly retryAfterMs: number | undefined
  constructor(reason: string, message: string, retryAfterMs?: number) {
    super(message)
    this.name = 'SendError'
    this.reason = reason
    this.retryAfterMs = retryAfterMs
  }
}

export class Sender {
  readonly #o: SenderOptions
  #dispatcher: Dispatcher
  readonly #queue: SealedItem[] = []
  #unackedBytes = 0
  #running: Promise<void> | undefined
  #roomWaiters: Array<() => void> = []
  #idleWaiters: Array<() => void> = []
  #stopped = false
  #wakeSleep: (() => void) | undefined
  #lastSuccessMs = 0
  #failing = false
  /** Whether the last failed request moved the agent to another collector. */
  #switched = false
  /**
   * The uncompressed body of a request that is compressed, reused from one request to the next
   * (requests go one at a time, and the compressed copy is what is sent). A new body per request
   * outlived the young generation while it waited for the compressor, so only a full GC freed it:
   * a third of the buffer bytes the agent dropped at full speed, and V8 starts a full GC each time
   * external memory grows by 64 MiB. Catch-up of the real log x5 (164 MB), 10 interleaved pairs:
   * full GCs 13-17 -> 9-13 (fewer in every pair), buffer bytes freed by them 396-560 -> 276-423 MiB;
   * agent CPU 4.78-5.29 -> 4.64-4.83 s in the first 3 pairs, within the noise (+-0.5 s) in the rest,
   * run under more load. Peak RSS did not move: that cap on external memory still bounds it (~80 MiB).
   * Held from the first compressed request on: collector.maxRequestBytes, or one bigger batch.
   */
  #body = Buffer.alloc(0)
  /** zstd bodies, a frame each from one stream (zstd-frames.ts). */
  readonly #zstd = new ZstdFrames({ chunkSize: CHUNK_BYTES, level: ZSTD_LEVEL })

  constructor(options: SenderOptions) {
    this.#o = options
    this.#dispatcher = options.dispatcher
  }

  /** New connections (new TLS material) for the requests from now on; returns the pool they replace, for the caller to close. */
  useDispatcher(dispatcher: Dispatcher): Dispatcher {
    const previous = this.#dispatcher
    this.#dispatcher = dispatcher
    return previous
  }

  get unackedBytes(): number {
    return this.#unackedBytes
  }

  get queuedBatches(): number {
    return this.#queue.length
  }

  /** Wall time of the last answer from the collector that was a success. */
  get lastSuccessMs(): number {
    return this.#lastSuccessMs
  }

  get failing(): boolean {
    return this.#failing
  }

  enqueue(item: SealedItem): void {
    this.#queue.push(item)
    this.#unackedBytes += item.size
    this.#startDrain()
  }

  #startDrain(): void {
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined
      // Enqueued while the drain wound down (by a caller of idle(), whose continuation runs before
      // this one): that enqueue found the drain still running, so it is sent from here.
      if (this.#queue.length > 0 && !this.#stopped) this.#startDrain()
    })
  }

  /** Resolves when unacknowledged bytes are under the bound. */
  waitForRoom(): Promise<void> {
    if (this.#unackedBytes < this.#o.maxUnackedBytes) return Promise.resolve()
    return new Promise((resolve) => this.#roomWaiters.push(resolve))
  }

  /** Resolves when every queued batch is acknowledged (or the sender stopped). */
  idle(): Promise<void> {
    if (this.#queue.length === 0 || this.#stopped) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  /** Stops retrying; batches not yet acknowledged stay unacknowledged (the log re-supplies them). */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#wakeSleep?.()
    await this.#running?.catch(() => {})
    this.#zstd.close()
    for (const w of this.#idleWaiters.splice(0)) w()
  }

  /** The last batch the collector holds for our stream, or undefined for a new stream. The request proves we hold `key`. */
  async streamHead(key: SigningKey): Promise<SealedBatch | undefined> {
    const issuedUnixMs = Date.now()
    const signature = signStreamHeadRequest(this.#o.streamId, issuedUnixMs, key.privateKey)
    const body = await this.#call(GET_STREAM_HEAD_PATH, encodeGetStreamHeadRequest({ streamId: this.#o.streamId, keyId: key.keyId, issuedUnixMs, signature }))
    return decodeGetStreamHeadResponse(body)
  }

  async #drain(): Promise<void> {
    let attempt = 0
    while (this.#queue.length > 0 && !this.#stopped) {
      const batch = this.#takeRequest()
      const started = performance.now()
      try {
        const body = await this.#call(PUSH_BATCH_PATH, encodePushBatchRequest(batch.map((b) => b.sealed), this.#bodyBuffer))
        const response = decodePushBatchResponse(body)
        if (response.streamId !== this.#o.streamId) {
          throw new SendError('bad_response', `collector acknowledged stream ${JSON.stringify(response.streamId)}, not ${JSON.stringify(this.#o.streamId)}`)
        }
        // Only batches of this request can be acknowledged by its answer: a sequence outside them
        // (a lying or confused peer) moves nothing, and the request is retried.
        const first = batch[0]!.sequence
        const last = batch.at(-1)!.sequence
        if (response.acknowledgedSequence < first || response.acknowledgedSequence > last) {
          throw new SendError('bad_acknowledgement', `collector acknowledged sequence ${response.acknowledgedSequence}, but this request carried sequences ${first} to ${last}; nothing is taken as acknowledged and the request is sent again`)
        }
        const acked = this.#release(response.acknowledgedSequence)
        this.#lastSuccessMs = Date.now()
        this.#failing = false
        attempt = 0
        await this.#o.onAck(acked.at(-1)!, acked, performance.now() - started)
      } catch (err) {
        if (this.#stopped) break
        const error = err instanceof SendError ? err : new SendError('internal', (err as Error).message)
        this.#failing = true
        attempt++
        // Moved to another collector: try it at once, the first time round the list; once every collector
        // failed in a row, back off as with one. A Retry-After was the old collector's, not the new one's.
        const retryAfterMs = this.#switched ? undefined : error.retryAfterMs
        const delay = this.#switched && attempt < this.#o.collectors.urls.length ? 0 : retryAfterMs ?? backoffMs(attempt, this.#o.retryInitialMs, this.#o.retryMaxMs)
        this.#o.onFailure?.(error, attempt, delay)
        await this.#sleep(delay)
      }
    }
    if (this.#queue.length === 0) for (const w of this.#idleWaiters.splice(0)) w()
  }

  /** The oldest batches that fit in one request (always at least one). */
  #takeRequest(): SealedItem[] {
    const out: SealedItem[] = []
    let bytes = 0
    for (const item of this.#queue) {
      if (out.length > 0 && (out.length >= this.#o.maxBatchesPerRequest || bytes + item.size > this.#o.maxRequestBytes)) break
      out.push(item)
      bytes += item.size
    }
    return out
  }

  /** Where a PushBatch body of `size` bytes is written: the reused buffer when it is compressed, else one of its own (sent as it is, it may still be in a socket's queue when the next request is written). */
  readonly #bodyBuffer = (size: number): Buffer => {
    if (!this.#encodingFor(size)) return Buffer.allocUnsafe(size)
    if (this.#body.length < size) this.#body = Buffer.allocUnsafe(Math.max(size, this.#o.maxRequestBytes))
    return this.#body.subarray(0, size)
  }

  #encodingFor(size: number): Exclude<RequestCompression, 'none'> | undefined {
    return this.#o.compression !== 'none' && size > MIN_COMPRESSED_BYTES ? this.#o.compression : undefined
  }

  #release(acknowledged: number): SealedItem[] {
    let n = 0
    while (n < this.#queue.length && this.#queue[n]!.sequence <= acknowledged) n++
    const acked = this.#queue.splice(0, n)
    for (const item of acked) this.#unackedBytes -= item.size
    if (this.#unackedBytes < this.#o.maxUnackedBytes) for (const w of this.#roomWaiters.splice(0)) w()
    return acked
  }

  /** One request to the collector chosen for it; its outcome tells the choice whether to move. */
  async #call(path: string, payload: Uint8Array): Promise<Buffer> {
    const collectors = this.#o.collectors
    const url = collectors.next()
    this.#switched = false
    try {
      const body = await this.#post(url, path, payload)
      const change = collectors.succeeded(url)
      if (change) this.#o.onSwitch?.(change)
      return body
    } catch (err) {
      const change = err instanceof SendError ? collectors.failed(url, err.reason) : undefined
      if (change) {
        this.#switched = true
        this.#o.onSwitch?.(change)
      }
      throw err
    }
  }

  /** `payload` is sent as it is (not copied): a request's 4 MiB is not held twice. */
  async #post(url: string, path: string, payload: Uint8Array): Promise<Buffer> {
    const encoding = this.#encodingFor(payload.length)
    const body = encoding === 'zstd' ? await this.#zstd.compress(payload) : encoding === 'gzip' ? await gzipBody(payload) : payload
    let res: Dispatcher.ResponseData
    try {
      res = await request(new URL(path, url), {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: {
          'content-type': PROTO_CONTENT_TYPE,
          'connect-protocol-version': '1',
          'connect-timeout-ms': String(this.#o.timeoutMs),
          ...(encoding ? { 'content-encoding': encoding } : {}),
        },
        body,
        headersTimeout: this.#o.timeoutMs,
        bodyTimeout: this.#o.timeoutMs,
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      })
    } catch (err) {
      throw transportError(err as Error & { code?: string }, url, this.#o.timeoutMs)
    }
    const text = await readBounded(res, url, this.#o.timeoutMs)
    if (res.statusCode === 200) return text
    const error = parseConnectError(res.statusCode, text.toString('utf8', 0, Math.min(text.length, 4096)))
    throw new SendError(error.code, describe(error, res.statusCode), retryAfterMs(res.headers['retry-after'], res.statusCode))
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.#wakeSleep = done
    })
  }
}

/** The response body, refused (and the connection dropped) as soon as it passes MAX_RESPONSE_BYTES. */
async function readBounded(res: Dispatcher.ResponseData, url: string, timeoutMs: number): Promise<Buffer> {
  const declared = Number(res.headers['content-length'])
  if (Number.isFinite(declared) && declared > MAX_RESPONSE_BYTES) {
    res.body.destroy()
    throw new SendError('bad_response', `collector ${url} announced a ${declared}-byte answer, over the limit of ${MAX_RESPONSE_BYTES}; is the URL a collector?`)
  }
  const chunks: Buffer[] = []
  let total = 0
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      total += chunk.length
      if (total > MAX_RESPONSE_BYTES) {
        res.body.destroy()
        throw new SendError('bad_response', `collector ${url} sent an answer over the limit of ${MAX_RESPONSE_BYTES} bytes; is the URL a collector?`)
      }
      chunks.push(chunk)
    }
  } catch (err) {
    if (err instanceof SendError) throw err
    throw transportError(err as Error & { code?: string }, url, timeoutMs)
  }
  return Buffer.concat(chunks, total)
}

/** Full jitter: uniform in [0, min(max, initial * 2^(attempt-1))]. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 30))
  return Math.round(Math.random() * ceiling)
}

function retryAfterMs(header: string | string[] | undefined, status: number): number | undefined {
  if ((status !== 429 && status !== 503) || typeof header !== 'string') return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 300) * 1000
  const date = Date.parse(header)
  return Number.isFinite(date) ? Math.min(Math.max(0, date - Date.now()), 300_000) : undefined
}

function describe(error: ConnectError, status: number): string {
  const hints: Partial<Record<string, string>> = {
    unauthenticated: 'the collector does not trust this node\'s signing key: add its .pub.pem to the collector\'s --trust list',
    permission_denied: 'the collector refused this node\'s signature, key or client certificate for the stream',
    out_of_range: 'the collector\'s stream does not continue where this agent\'s checkpoint does (was the collector\'s store reset, or does another agent use the same stream id?)',
    already_exists: 'the collector holds a different batch under the same sequence number (another agent with the same stream id?)',
    failed_precondition: 'the batch does not link to the collector\'s stream head',
    resource_exhausted: 'the collector is rate-limiting or the request is over one of its limits',
  }
  const hint = hints[error.code]
  return `collector answered HTTP ${status} ${error.code}: ${error.message}${hint ? ` (${hint})` : ''}`
}

function transportError(err: Error & { code?: string }, url: string, timeoutMs: number): SendError {
  if (err.name === 'TimeoutError' || err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT') {
    return new SendError('timeout', `collector ${url} did not answer within ${timeoutMs} ms`)
  }
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code
  return new SendError('transport', `cannot reach collector ${url}: ${code ?? err.message}`)
}

/** An HTTP client for one peer (the collector, an alert sink): keep-alive, TLS verification on, optional client certificate. */
export function peerDispatcher(options: { ca?: Buffer; cert?: Buffer; key?: Buffer; timeoutMs: number; http2?: Http2Mode }): Agent {
  const http2 = options.http2 ?? 'auto'
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 2,
    allowH2: http2 !== 'never',
    // Top-level, though undici's types list useH2c only under h2Options: its Pool builds the connector from
    // the top-level option and never reads h2Options.useH2c (measured: with it there, h2c was not spoken).
    ...({ useH2c: http2 === 'always' } as object),
    connect: {
      timeout: options.timeoutMs,
      rejectUnauthorized: true,
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.key ? { key: options.key } : {}),
    },
  })
}
