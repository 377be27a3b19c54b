#!/usr/bin/env node
// `npm run bench:query`: the collector's query index at a million events.
//   1. ingest: generated batches pushed over HTTP to a collector on 127.0.0.1
//      without the index, then the same batches (read back from its segments) to
//      one with it, one after the other so that neither shares the machine with
//      the other's work. Throughput as the pushing client sees it (push to ack),
//      both ways; the index worker's own rate, and how long after the last ack it
//      had caught up; index time per batch, index size
//   2. queries over GET /v1/events and /v1/findings: by user and hour, by
//      resource and name, by finding severity (first page and every page), each
//      checked against the answer known from generating the events
//   3. `collector reindex` of the whole store
// The batches are sealed here with the test fixtures (batchOf/seal, the agent's
// codecs and Ed25519), not by the agent: generating and tailing a 1.3 GB log
// through the agent would add minutes and measure the agent, which `npm run
// bench` already does. Findings come from the fixtures' sample inspector.
// Prints the figures, writes JSON to bench-out/, and adds a row to the Query index table of docs/benchmarks.md.
//   node scripts/bench-query.ts [--events N] [--per-batch N] [--keep]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { rebuildIndex } from '../collector/index.ts'
import { newToken, parseReaders } from '../collector/readers.ts'
import { startCollector } from '../collector/server.ts'
import { openFileStore, streamEntries } from '../collector/store/file-store.ts'
import { decodeSealedBatch, encodePushBatchRequest, PUSH_BATCH_PATH, type SealedBatch } from '../proto/wire.ts'
import { post, testKey, trustOf } from '../test/collector/fixtures.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'
import { generateWorkload, runQueries, segmentBytes, sqliteIndexBytes } from './query-workload.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({
  options: { events: { type: 'string', default: '1000000' }, 'per-batch': { type: 'string', default: '800' }, keep: { type: 'boolean', default: false } },
  strict: true,
})
const EVENTS = Number(values.events)
const PER_BATCH = Number(values['per-batch'])
const STREAMS = ['cp-1', 'cp-2', 'cp-3']
const BATCHES_PER_REQUEST = 4
const say = (s: string) => process.stdout.write(`${s}\n`)
const MiB = 1024 * 1024

const dir = mkdtempSync(join(tmpdir(), 'auditrail-bench-query-'))
const key = testKey()
const { token, line } = newToken('auditor', 'bench')
const readers = parseReaders(`${line}\n`)
const open = (name: string, index: boolean) => startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: join(dir, name), trustedKeys: trustOf(key), index, ...(index ? { readers } : {}) })
const plain = await open('plain', false)

const pushMs = { plain: 0, indexed: 0 }
/** Sealed batches waiting to be pushed, per stream. */
let pending: SealedBatch[][] = STREAMS.map(() => [])

say(`auditrail bench:query: ${EVENTS} events in batches of ${PER_BATCH} over ${STREAMS.length} streams (node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}); store in ${dir}`)
const started = performance.now()
const { expected, generated, bytes } = await generateWorkload({
  events: EVENTS, perBatch: PER_BATCH, streams: STREAMS, key,
  onBatch: async (stream, sealed) => {
    pending[stream]!.push(sealed)
    if (pending.at(-1)!.length === BATCHES_PER_REQUEST) {
      await flush(plain, 'plain', pending)
      pending = STREAMS.map(() => [])
    }
  },
  progress: (n) => process.stderr.write(`\r${n} events`),
})
await flush(plain, 'plain', pending)
process.stderr.write('\n')
await plain.close()

/** Pushes what is pending, one request per stream; times push to ack. */
async function flush(c: typeof plain, name: keyof typeof pushMs, byStream: SealedBatch[][]): Promise<void> {
  const t0 = performance.now()
  for (const batches of byStream.filter((b) => b.length > 0)) {
    const res = await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(batches))
    if (res.status !== 200) throw new Error(`${name}: ${res.status} ${res.body.toString()}`)
  }
  pushMs[name] += performance.now() - t0
}

// The same batches again, read back from the first store, to the collector with the index.
process.stderr.write('again, to the collector with the index\n')
const indexed = await open('indexed', true)
const sources = STREAMS.map((stream) => streamEntries(join(dir, 'plain'), stream))
const indexStarted = performance.now()
for (let done = false, n = 0; !done; n++) {
  done = true
  const byStream: SealedBatch[][] = []
  for (const source of sources) {
    const batches: SealedBatch[] = []
    for (let i = 0; i < BATCHES_PER_REQUEST; i++) {
      const next = await source.next()
      if (next.done) break
      if (next.value.item.kind !== 'entry') throw new Error(`plain store: ${next.value.item.reason}`)
      batches.push(decodeSealedBatch(next.value.item.bytes))
    }
    if (batches.length === BATCHES_PER_REQUEST) done = false
    byStream.push(batches)
  }
  await flush(indexed, 'indexed', byStream)
  if (n % 25 === 0) process.stderr.write(`\r${indexed.indexer!.stats.indexedBatches * PER_BATCH} events indexed`)
}
const lastAck = performance.now()
await indexed.indexer!.idle()
const indexDone = performance.now()
process.stderr.write('\n')
const stats = indexed.indexer!.stats

const ingest = {
  events: generated,
  megabytes: bytes / MiB,
  batches: stats.indexedBatches,
  plainEventsPerSecond: generated / (pushMs.plain / 1000),
  indexedEventsPerSecond: generated / (pushMs.indexed / 1000),
  indexEventsPerSecond: generated / ((indexDone - indexStarted) / 1000),
  indexCaughtUpSecondsAfterLastAck: (indexDone - lastAck) / 1000,
  indexMsPerBatchMean: stats.totalMs / stats.indexedBatches,
  indexMsPerBatchMax: stats.maxBatchMs,
  batchesFromSegments: stats.fromSegments,
  batchesOverBound: stats.overBound,
  indexFailures: stats.failures,
  wallSeconds: (performance.now() - started) / 1000,
}
say(`1. ingest over HTTP: ${ingest.events} events (${ingest.megabytes.toFixed(0)} MiB of lines, ${ingest.batches} batches of ~${(ingest.megabytes / ingest.batches).toFixed(2)} MiB)`)
say(`   push to ack, index off: ${Math.round(ingest.plainEventsPerSecond)} events/s; index on: ${Math.round(ingest.indexedEventsPerSecond)} events/s (${((ingest.indexedEventsPerSecond / ingest.plainEventsPerSecond) * 100).toFixed(0)}%)`)
say(`   index worker: ${Math.round(ingest.indexEventsPerSecond)} events/s from the first push until all was indexed, ${ingest.indexCaughtUpSecondsAfterLastAck.toFixed(1)} s after the last ack; ${ingest.batchesOverBound} batches over the in-flight bound, ${ingest.batchesFromSegments} indexed from the segments, ${ingest.indexFailures} failures`)
say(`   index time per batch: mean ${ingest.indexMsPerBatchMean.toFixed(1)} ms, max ${ingest.indexMsPerBatchMax.toFixed(1)} ms (in the worker; ${(ingest.indexMsPerBatchMean / PER_BATCH * 1000).toFixed(1)} µs per event)`)

// --- queries

say(`2. queries (GET over HTTP, limit 1000, JSON lines with the raw events):`)
const { queries, findingsFirstPageMs } = await runQueries(indexed.url, token, expected, say)

// --- sizes and reindex

await indexed.close()
const indexBytes = sqliteIndexBytes(join(dir, 'indexed'))
const storeBytes = segmentBytes(join(dir, 'plain'))
const store = await openFileStore(join(dir, 'indexed'))
const reindex = await rebuildIndex(join(dir, 'indexed'))
await store.close()
const rebuiltBytes = sqliteIndexBytes(join(dir, 'indexed'))
const perMillion = 1_000_000 / generated
say(`3. index size: ${(indexBytes / MiB).toFixed(0)} MiB live (${((indexBytes * perMillion) / MiB).toFixed(0)} MiB per million events; segments ${(storeBytes / MiB).toFixed(0)} MiB), ${(rebuiltBytes / MiB).toFixed(0)} MiB rebuilt`)
say(`   reindex from the segments: ${(reindex.ms / 1000).toFixed(1)} s (${Math.round(reindex.events / (reindex.ms / 1000))} events/s)`)

const result = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, ingest, queries, findingsFirstPageMs, indexBytes, storeBytes, rebuiltBytes, reindex }
mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
const jsonFile = join(ROOT, 'bench-out', `bench-query-${result.date.replace(/[:.]/g, '-')}.json`)
writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)
const row = `| ${result.date.slice(0, 10)} | ${process.version} | ${result.cpu} x${result.cores} | ${generated} | ${Math.round(ingest.plainEventsPerSecond)} / ${Math.round(ingest.indexedEventsPerSecond)} | ${Math.round(ingest.indexEventsPerSecond)} (${ingest.indexCaughtUpSecondsAfterLastAck.toFixed(0)} s) | ${ingest.indexMsPerBatchMean.toFixed(1)} / ${ingest.indexMsPerBatchMax.toFixed(0)} | ${((indexBytes * perMillion) / MiB).toFixed(0)} MiB | ${queries.map((q) => `${q.firstPageMs.toFixed(0)} (${q.results})`).join(' · ')} | ${findingsFirstPageMs.toFixed(0)} | ${(reindex.ms / 1000).toFixed(0)} s | ${queries.every((q) => q.correct) ? 'yes' : 'NO'} |`
insertBenchmarkRow(join(ROOT, 'docs', 'benchmarks.md'), 'Query index', row)
say(`figures: ${jsonFile}; row added to the Query index table of docs/benchmarks.md`)
if (!values.keep) rmSync(dir, { recursive: true, force: true })
else say(`kept ${dir}`)
if (!queries.every((q) => q.correct)) process.exitCode = 1

