// The collector's handle on its index writer. Indexing a batch takes tens of ms
// (73 ms on average for 800 events at a million indexed): on the collector's event
// loop it held up acknowledgements (7,800 events/s against 27,000 without index).
// So the index is written by a worker thread (index-worker.ts); this side posts
// each appended batch to it and keeps the stats. Queries read through their own
// read-only connection (WAL: readers run beside the writer and see each commit).
//
// Nothing here can fail a push: the segments hold every acknowledged batch, and
// whatever the worker did not index (its queue over the bound, a failed batch, a
// crash) it indexes from the segments.
import { Worker } from 'node:worker_threads'
import { pino, type Logger } from 'pino'
import { IndexError, type EntryLocation } from './index.ts'
import type { FileStore } from './store/file-store.ts'

const MiB = 1024 * 1024

/** What the worker starts from (workerData). */
export interface WorkerStart {
  path: string
  storeDir: string
  /** Every stream's head when the worker starts: it catches up to it, and drops index rows past it. */
  heads: Record<string, number>
}

export type ToWorker =
  /** A batch on disk; `entry` (its SealedBatch bytes) is left out when too much is in flight. */
  | { type: 'appended'; n: number; stream: string; sequence: number; at: EntryLocation; entry?: Uint8Array }
  | { type: 'close' }

export type FromWorker =
  | { type: 'ready'; forgot: Array<{ stream: string; indexed: number; head: number; dropped: number }>; catchingUp: number }
  | { type: 'cannot-open'; message: string; indexError: boolean }
  | { type: 'handled'; n: number; stream: string; sequence: number; catchingUp: number; indexed?: { events: number; ms: number }; error?: string }
  /** A batch indexed from the segments. */
  | { type: 'indexed'; events: number; ms: number }
  | { type: 'caught-up'; stream: string; batches: number; ms: number; indexedSequence: number; catchingUp: number }
  | { type: 'catch-up-failed'; stream: string; message: string; catchingUp: number }

export interface LiveIndexerStats {
  /** Batches indexed, from posted bytes or from the segments. */
  indexedBatches: number
  /** Of those, the ones read back from the segments (start-up, over the bound, after a failure or crash). */
  fromSegments: number
  /** Appended batches whose bytes were not posted because the worker was too far behind. */
  overBound: number
  /** Failed batches, catch-ups, and worker crashes. */
  failures: number
  restarts: number
  /** Time the worker spent indexing the last batch, the most for one, and in all, in ms. */
  lastBatchMs: number
  maxBatchMs: number
  totalMs: number
}

/**
 * Entry bytes posted and not yet indexed, at most (batches, bytes): past either, a
 * batch goes to the worker without its bytes and is read back from the segments, so
 * that a worker far behind costs no memory here.
 */
const MAX_IN_FLIGHT_BATCHES = 32
const MAX_IN_FLIGHT_BYTES = 64 * MiB
/** Time the worker gets on close() to finish what was posted (then it is stopped; the next start catches up). */
const CLOSE_TIMEOUT_MS = 10_000
// Beside this module, in its language: the sources (.ts) or the build (scripts/build.ts, .js).
const WORKER_URL = new URL(`./index-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`, import.meta.url)
/** A worker that ran this long before it stopped was not crash-looping: the next restart is immediate again. */
const STABLE_MS = 60_000
/**
 * Post times of the messages not yet handled, by message number modulo this: past it (a worker that
 * far behind) the oldest are overwritten, and lagSeconds() reads as at least the oldest kept.
 */
const POSTED_AT_RING = 4096

export class LiveIndexer {
  readonly stats: LiveIndexerStats = { indexedBatches: 0, fromSegments: 0, overBound: 0, failures: 0, restarts: 0, lastBatchMs: 0, maxBatchMs: 0, totalMs: 0 }
  /** Told each batch's indexing time (for the collector's metrics). */
  onIndexed: ((ms: number, fromSegments: boolean) => void) | undefined
  readonly #path: string
  readonly #store: FileStore
  readonly #log: Logger
  #worker: Worker | undefined
  #startedAt = 0
  #ready = false
  /** Messages posted to the current worker, and the last one it handled. */
  #posted = 0
  #handled = 0
  #catchingUp = 0
  /** Posted entries not yet handled, oldest first. */
  #inFlight: Array<{ n: number; bytes: number }> = []
  #inFlightBytes = 0
  #everReady = false
  #crashes = 0
  #restartTimer: NodeJS.Timeout | undefined
  #closed = false
  #waiters: Array<() => void> = []
  readonly #postedAt = new Float64Array(POSTED_AT_RING)
  /** Since when a catch-up from the segments is pending or running (a worker catching up, or none running). */
  #behindSince: number | undefined

  constructor(path: string, store: FileStore, log: Logger = pino({ level: 'silent' })) {
    this.#path = path
    this.#store = store
    this.#log = log
  }

  /**
   * Starts the worker; resolves once it has opened (or created) the index and
   * dropped rows past the heads, so that a read-only connection can open it. The
   * streams behind are caught up in the background. Rejects when the index cannot
   * be opened (another schema version, a damaged file).
   */
  start(): Promise<void> {
    return this.#spawn()
  }

  /**
   * Hands a stored batch to the worker. `entry` stays the store's (it is its stream's
   * head), so it is posted as a copy: serialized outside this thread's heap and made an
   * ArrayBuffer in the worker's. Transferring needed a buffer of its own for every batch
   * on this thread, and those megabytes were what set off most of its full collections.
   */
  afterAppend(stream: string, sequence: number, at: EntryLocation, entry: Uint8Array): void {
    const worker = this.#worker
    // Without a worker (one is being restarted), the next one catches up to the heads it starts from.
    if (this.#closed || !worker) return
    const n = ++this.#posted
    this.#postedAt[n % POSTED_AT_RING] = performance.now()
    if (this.#inFlight.length >= MAX_IN_FLIGHT_BATCHES || this.#inFlightBytes >= MAX_IN_FLIGHT_BYTES) {
      this.stats.overBound++
      worker.postMessage({ type: 'appended', n, stream, sequence, at } satisfies ToWorker)
      return
    }
    this.#inFlight.push({ n, bytes: entry.byteLength })
    this.#inFlightBytes += entry.byteLength
    worker.postMessage({ type: 'appended', n, stream, sequence, at, entry } satisfies ToWorker)
  }

  /** How long the index has been behind the store, in seconds: 0 when every stored batch is indexed. */
  lagSeconds(): number {
    const now = performance.now()
    let oldest = this.#behindSince ?? now
    if (this.#posted > this.#handled) {
      const n = Math.max(this.#handled + 1, this.#posted - POSTED_AT_RING + 1)
      oldest = Math.min(oldest, this.#postedAt[n % POSTED_AT_RING]!)
    }
    return (now - oldest) / 1000
  }

  /** Resolves when every batch posted so far is indexed (or failed) and no catch-up runs. */
  async idle(): Promise<void> {
    while (!this.#closed && !(this.#ready && this.#handled >= this.#posted && this.#catchingUp === 0)) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
  }

  /**
   * Lets the worker index what was posted (a catch-up stops after its current batch:
   * the next start continues it), closes the index and ends the worker.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#restartTimer)
    this.#wake()
    const worker = this.#worker
    if (!worker) return
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    worker.postMessage({ type: 'close' } satisfies ToWorker)
    const timer = setTimeout(() => {
      this.#log.warn({ ms: CLOSE_TIMEOUT_MS }, 'the index worker did not finish what was posted to it in time; stopped it (the next start indexes the rest from the segments)')
      void worker.terminate()
    }, CLOSE_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }

  /** For tests: ends the worker the way a crash would (it is replaced). */
  async terminateWorker(): Promise<void> {
    await this.#worker?.terminate()
  }

  #spawn(): Promise<void> {
    const heads = this.#store.headSequences()
    const worker = new Worker(WORKER_URL, { workerData: { path: this.#path, storeDir: this.#store.dir, heads } satisfies WorkerStart })
    this.#worker = worker
    this.#startedAt = performance.now()
    this.#ready = false
    this.#posted = 0
    this.#handled = 0
    this.#catchingUp = 0
    this.#inFlight = []
    this.#inFlightBytes = 0
    return new Promise<void>((resolve, reject) => {
      /** Why the worker stopped, when it said or threw. */
      let failure: Error | undefined
      worker.on('message', (m: FromWorker) => {
        if (worker !== this.#worker) return
        if (m.type === 'cannot-open') {
          failure = m.indexError ? new IndexError(m.message) : new Error(m.message)
          return
        }
        if (m.type === 'ready') {
          this.#ready = this.#everReady = true
          for (const f of m.forgot) this.#log.warn(f, 'the index was ahead of the segments (store restored?); dropped the rows past the head')
          resolve()
        }
        this.#onMessage(m)
        this.#wake()
      })
      // An uncaught exception in the worker; 'exit' follows.
      worker.on('error', (err) => {
        failure ??= err
      })
      worker.on('exit', (code) => {
        if (worker !== this.#worker) return
        this.#worker = undefined
        this.#ready = false
        // Whatever was posted and not handled is caught up from the segments by the next worker.
        this.#behindSince ??= performance.now()
        this.#wake()
        if (this.#closed) return reject(new IndexError('the indexer was closed before its worker had opened the index'))
        // At start-up the collector stops with the reason (startCollector says what to do).
        if (!this.#everReady) return reject(failure ?? new Error(`the index worker stopped (exit code ${code}) before it had opened the index`))
        this.stats.failures++
        this.#restart(code, failure)
      })
    })
  }

  /** Replaces a worker that stopped; the new one indexes from the segments whatever was not indexed. */
  #restart(code: number, failure: Error | undefined): void {
    if (performance.now() - this.#startedAt > STABLE_MS) this.#crashes = 0
    const delayMs = Math.min(30_000, 100 * 2 ** this.#crashes)
    this.#crashes++
    // The message only: the worker holds no secrets, and a stack says nothing to an operator.
    this.#log.error({ exitCode: code, err: failure?.message, restartInMs: delayMs }, 'the index worker stopped; a new one catches up from the segments (pushes are not affected)')
    this.#restartTimer = setTimeout(() => {
      if (this.#closed) return
      this.stats.restarts++
      // A new worker that fails is handled by its exit (logged, restarted later).
      this.#spawn().catch(() => {})
    }, delayMs)
  }

  #onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'handled':
        this.#handled = m.n
        while (this.#inFlight.length > 0 && this.#inFlight[0]!.n <= m.n) this.#inFlightBytes -= this.#inFlight.shift()!.bytes
        if (m.indexed) this.#count(m.indexed.ms, false)
        if (m.error !== undefined) {
          this.stats.failures++
          this.#log.error({ stream: m.stream, sequence: m.sequence, err: m.error }, 'indexing a batch failed; it is stored, and will be indexed from the segments')
        }
        break
      case 'indexed':
        this.#count(m.ms, true)
        break
      case 'caught-up':
        this.#log.info({ stream: m.stream, batches: m.batches, ms: Math.round(m.ms), indexedSequence: m.indexedSequence }, 'index caught up with the segments')
        break
      case 'catch-up-failed':
        this.stats.failures++
        this.#log.error({ stream: m.stream, err: m.message }, 'indexing from the segments failed; the next batch of the stream tries again (or run \'auditrail collector reindex\' with the collector stopped)')
        break
    }
    if ('catchingUp' in m) {
      this.#catchingUp = m.catchingUp
      if (m.catchingUp === 0) this.#behindSince = undefined
      else this.#behindSince ??= performance.now()
    }
  }

  #count(ms: number, fromSegments: boolean): void {
    this.stats.indexedBatches++
    if (fromSegments) this.stats.fromSegments++
    this.stats.lastBatchMs = ms
    this.stats.maxBatchMs = Math.max(this.stats.maxBatchMs, ms)
    this.stats.totalMs += ms
    this.onIndexed?.(ms, fromSegments)
  }

  #wake(): void {
    for (const resolve of this.#waiters.splice(0)) resolve()
  }
}
