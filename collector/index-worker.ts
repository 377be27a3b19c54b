// The index's writer, in a worker thread started by LiveIndexer (live-indexer.ts):
// it owns the only write connection, so that indexing (tens of ms per batch) never
// runs on the collector's event loop, where it would hold up acknowledgements.
//
// It indexes each appended batch from the bytes the collector posts, and a stream
// that is behind (start-up, bytes not posted because this worker was too far
// behind, a failed batch) from the segments. Every message back carries the
// number of catch-ups running, so that the collector knows when all is indexed.
import { parentPort, workerData } from 'node:worker_threads'
import { catchUpStream, EventIndex, IndexError, type IndexedBatch } from './index.ts'
import type { FromWorker, ToWorker, WorkerStart } from './live-indexer.ts'

const port = parentPort
if (!port) throw new Error('collector/index-worker.ts runs as a worker thread (started by LiveIndexer), not on its own')
const start = workerData as WorkerStart
const post = (m: FromWorker) => port.postMessage(m)

let index: EventIndex
/** The last appended sequence of each stream (on disk before it was posted): how far a catch-up goes. */
const heads = new Map(Object.entries(start.heads))
const catchingUp = new Map<string, Promise<void>>()
let closing = false

try {
  index = new EventIndex(start.path, { create: true })
  const forgot: Array<{ stream: string; indexed: number; head: number; dropped: number }> = []
  for (const [stream, head] of heads) {
    const indexed = index.indexedSequence(stream)
    if (indexed > head) forgot.push({ stream, indexed, head, dropped: index.forgetAfter(stream, head) })
    else if (indexed < head) catchUp(stream)
  }
  post({ type: 'ready', forgot, catchingUp: catchingUp.size })
  port.on('message', onMessage)
} catch (err) {
  post({ type: 'cannot-open', message: (err as Error).message, indexError: err instanceof IndexError })
  port.close()
}

function onMessage(m: ToWorker): void {
  if (m.type === 'close') {
    // Posted after every batch: those were handled; a catch-up stops after its current batch.
    closing = true
    void Promise.all(catchingUp.values()).then(() => {
      index.close()
      port!.close()
    })
    return
  }
  const { n, stream, sequence, at, entry } = m
  if (sequence > (heads.get(stream) ?? 0)) heads.set(stream, sequence)
  let indexed: { events: number; ms: number } | undefined
  let error: string | undefined
  if (!entry || catchingUp.has(stream) || index.indexedSequence(stream) !== sequence - 1) {
    if (index.indexedSequence(stream) < sequence) catchUp(stream)
  } else {
    const started = performance.now()
    try {
      indexed = { events: index.indexBatch(stream, at, entry).events, ms: performance.now() - started }
    } catch (err) {
      error = (err as Error).message
      catchUp(stream)
    }
  }
  post({ type: 'handled', n, stream, sequence, catchingUp: catchingUp.size, ...(indexed ? { indexed } : {}), ...(error !== undefined ? { error } : {}) })
}

/** Indexes a stream from the segments up to its head, in the background (messages are handled between batches). */
function catchUp(stream: string): void {
  if (catchingUp.has(stream) || closing) return
  // Registered before it runs: a catch-up that finds nothing to do must not leave its entry behind.
  catchingUp.set(stream, Promise.resolve().then(async () => {
    const started = performance.now()
    let batches = 0
    const onBatch = (b: IndexedBatch, ms: number) => post({ type: 'indexed', events: b.events, ms })
    try {
      // Appends go on meanwhile: loop until the index reaches the head.
      for (;;) {
        const head = heads.get(stream) ?? 0
        if (closing || index.indexedSequence(stream) >= head) break
        batches += await catchUpStream(index, start.storeDir, stream, head, { yieldEvery: 1, stop: () => closing, onBatch })
      }
      catchingUp.delete(stream)
      post({ type: 'caught-up', stream, batches, ms: performance.now() - started, indexedSequence: index.indexedSequence(stream), catchingUp: catchingUp.size })
    } catch (err) {
      catchingUp.delete(stream)
      post({ type: 'catch-up-failed', stream, message: (err as Error).message, catchingUp: catchingUp.size })
    }
  }))
}
