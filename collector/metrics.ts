// Every metric the collector exposes, in one place, named by Prometheus
// conventions (auditrail_collector_ prefix, _total counters, base units), as the
// agent's (agent/observe/metrics.ts). Label values come from fixed sets
// (procedures, protocols, Connect codes, refusal reasons, record kinds): never
// a stream id, a key id or a path, so that thousands of nodes or a scanner
// trying every URL cannot grow the series.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { ConnectCode } from '../proto/connect.ts'
import { isGrpc } from './grpc.ts'
import { connectCodec } from './transport.ts'
import { GET_STREAM_HEAD_PATH, PUSH_BATCH_PATH, WireError, type Batch } from '../proto/wire.ts'

/** A path that is neither procedure (a scanner, a v1 agent) is counted as `other`. */
export type Procedure = 'PushBatch' | 'GetStreamHead' | 'other'

export function procedureOf(path: string | undefined): Procedure {
  return path === PUSH_BATCH_PATH ? 'PushBatch' : path === GET_STREAM_HEAD_PATH ? 'GetStreamHead' : 'other'
}

/**
 * Why a batch was refused, by the Connect code its refusal carries: in the batch path each code has one
 * cause (server.ts), and these names are what an alert or a person reading a dashboard looks for.
 */
const REFUSAL_REASONS: Readonly<Record<ConnectCode, string>> = {
  invalid_argument: 'malformed',
  unauthenticated: 'untrusted_key',
  permission_denied: 'key_binding',
  already_exists: 'fork',
  out_of_range: 'gap',
  failed_precondition: 'broken_link',
  resource_exhausted: 'over_limit',
  unavailable: 'store_failed',
  canceled: 'other',
  unknown: 'other',
  deadline_exceeded: 'other',
  not_found: 'other',
  aborted: 'other',
  unimplemented: 'other',
  internal: 'other',
  data_loss: 'other',
}

/** The protocol and codec a content type names; anything else (refused with 415) is `other`, never the header itself. */
function protocolOf(contentType: string | undefined): { protocol: string; codec: string } {
  if (isGrpc(contentType)) return { protocol: 'grpc', codec: 'proto' }
  return { protocol: 'connect', codec: connectCodec(contentType)?.name ?? 'other' }
}

/**
 * The silences the collector counts streams by, in minutes. Counts over a fixed set of thresholds instead
 * of an age per stream: a stream label would give each of thousands of nodes its own series, and every
 * retired node one more forever. An agent heartbeats every 10 s, so 5 minutes without a batch is a node
 * in trouble; a stream silent for over a day is most likely a retired node, which the alert leaves out.
 */
export const SILENCE_MINUTES = [5, 15, 60, 1440] as const

/** What the collector can tell about its index at scrape time (undefined when it keeps none). */
export interface IndexLag {
  batches: number
  seconds: number
}

export class CollectorMetrics {
  readonly registry = new Registry()

  readonly requests = this.#counter('auditrail_collector_requests_total', 'Requests to the collector\'s procedures, by procedure, protocol, codec, result (ok, or the Connect code of the refusal) and HTTP version (1.1 or 2).', ['procedure', 'protocol', 'codec', 'code', 'http'])
  readonly requestDuration = new Histogram({
    name: 'auditrail_collector_request_duration_seconds',
    help: 'Time from a request\'s arrival to the end of its answer, by procedure.',
    labelNames: ['procedure'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly receivedBytes = this.#counter('auditrail_collector_received_bytes_total', 'Request body bytes received by the procedures, as sent (compressed or not).')
  readonly batchesAccepted = this.#counter('auditrail_collector_batches_accepted_total', 'Batches appended to a stream.')
  readonly batchesDuplicate = this.#counter('auditrail_collector_batches_duplicate_total', 'Batches the stream already held (same sequence and digest), acknowledged again without being stored twice.')
  readonly batchesRefused = this.#counter('auditrail_collector_batches_refused_total', 'Batches refused, by reason (malformed, untrusted_key, key_binding, fork, gap, broken_link, over_limit, rate_limited, store_failed, other).', ['reason'])
  readonly recordsStored = this.#counter('auditrail_collector_records_stored_total', 'Records of accepted batches, by kind (event, quarantine, gap).', ['kind'])
  readonly storedBytes = this.#counter('auditrail_collector_stored_bytes_total', 'Signed batch bytes appended to the store (each accepted batch\'s Batch bytes, as signed).')
  readonly storeAppendDuration = new Histogram({
    name: 'auditrail_collector_store_append_duration_seconds',
    help: 'Time to append one batch to the store, fsync included.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })
  readonly verifyDuration = new Histogram({
    name: 'auditrail_collector_verify_duration_seconds',
    help: 'Time to check one batch, by check: seal (digest, signature, decoding) or chain (duplicate, key binding, link; under the stream\'s lock, inside the store\'s append).',
    labelNames: ['check'],
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  })
  readonly indexDuration = new Histogram({
    name: 'auditrail_collector_index_duration_seconds',
    help: 'Time for the index worker to index one batch, by source: live (handed over after its append) or segments (a catch-up).',
    labelNames: ['source'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  })
  readonly connectionsRefused = this.#counter('auditrail_collector_connections_refused_total', 'Connections closed as they arrived because their remote address held maxConnectionsPerAddress already.')

  /** `indexLag` only when the collector keeps an index: without one its gauges are absent rather than 0. */
  constructor(sources: {
    streams: () => number | Promise<number>
    /** BatchStore.lastBatchAges. */
    lastBatchAges: () => Promise<number[]>
    openConnections: () => number
    /** BatchStore.unready. */
    unready: () => Promise<string | undefined>
    /** Bytes free on the store's filesystem; only for a directory (a database's disk is its own server's). */
    freeBytes?: () => Promise<number>
    indexLag?: () => IndexLag
  }) {
    collectDefaultMetrics({ register: this.registry })
    // prom-client names these gauges with a _total suffix, which Prometheus reserves for counters (promtool flags it).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name)
    // Read when scraped, not kept up to date on every request.
    this.#gauge('auditrail_collector_streams', 'Streams the store holds.', () => sources.streams())
    new Gauge({
      name: 'auditrail_collector_streams_silent',
      help: `Streams whose last stored batch is older than \`minutes\` (${SILENCE_MINUTES.join(', ')}); heartbeats count as batches.`,
      labelNames: ['minutes'],
      registers: [this.registry],
      async collect() {
        const ages = await sources.lastBatchAges()
        for (const minutes of SILENCE_MINUTES) this.set({ minutes: String(minutes) }, ages.filter((age) => age > minutes * 60).length)
      },
    })
    this.#gauge('auditrail_collector_store_ready', 'Whether the store takes writes now (1) or not (0): for PostgreSQL, whether the database answers; /readyz on the metrics address says the same.', async () => ((await sources.unready()) === undefined ? 1 : 0))
    const freeBytes = sources.freeBytes
    if (freeBytes) this.#gauge('auditrail_collector_store_free_bytes', 'Bytes free to the collector on the file store\'s filesystem (absent for PostgreSQL).', () => freeBytes())
    this.#gauge('auditrail_collector_open_connections', 'Connections open to the collector\'s listen address.', () => sources.openConnections())
    const indexLag = sources.indexLag
    if (indexLag) {
      this.#gauge('auditrail_collector_index_lag_batches', 'Stored batches not yet in the query index, over all streams.', () => indexLag().batches)
      this.#gauge('auditrail_collector_index_lag_seconds', 'How long the index has been behind the store: the oldest batch handed to the indexer and not yet indexed, or a catch-up from the segments pending or running since (0 when current).', () => indexLag().seconds)
    }
  }

  /** One answered (or abandoned) request to a procedure path; `code` is ok or the Connect code of its refusal. */
  request(procedure: Procedure, contentType: string | undefined, code: ConnectCode | 'ok', httpVersionMajor: number, seconds: number): void {
    const { protocol, codec } = protocolOf(contentType)
    // Two values: node:http answers HTTP/1.0 as 1.1, and the listener speaks nothing else.
    this.requests.inc({ procedure, protocol, codec, code, http: httpVersionMajor === 2 ? '2' : '1.1' })
    this.requestDuration.observe({ procedure }, seconds)
  }

  /** A batch the request stopped at (a request stops at its first refused batch). */
  batchRefused(err: unknown, rateLimited: boolean): void {
    const reason = rateLimited ? 'rate_limited' : err instanceof WireError ? 'malformed' : REFUSAL_REASONS[(err as { code: ConnectCode }).code] ?? 'other'
    this.batchesRefused.inc({ reason })
  }

  batchStored(batch: Batch, batchBytes: number, seconds: number): void {
    this.batchesAccepted.inc()
    this.storedBytes.inc(batchBytes)
    this.storeAppendDuration.observe(seconds)
    let events = 0
    let quarantines = 0
    let gaps = 0
    for (const r of batch.records) {
      if (r.line !== undefined) events++
      else if (r.quarantine) quarantines++
      else gaps++
    }
    if (events) this.recordsStored.inc({ kind: 'event' }, events)
    if (quarantines) this.recordsStored.inc({ kind: 'quarantine' }, quarantines)
    if (gaps) this.recordsStored.inc({ kind: 'gap' }, gaps)
  }

  #counter(name: string, help: string, labelNames: string[] = []): Counter<string> {
    return new Counter({ name, help, labelNames, registers: [this.registry] })
  }

  #gauge(name: string, help: string, read: () => number | Promise<number>): Gauge<string> {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read())
      },
    })
  }
}
