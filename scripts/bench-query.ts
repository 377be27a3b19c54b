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
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { rebuildIndex, indexPath } from '../collector/index.ts'
import { newToken, parseReaders } from '../collector/readers.ts'
import { startCollector } from '../collector/server.ts'
import { openFileStore, streamEntries } from '../collector/store/file-store.ts'
import { batchDigest, decodeSealedBatch, encodePushBatchRequest, PUSH_BATCH_PATH, SEVERITIES, type SealedBatch } from '../proto/wire.ts'
import { batchOf, post, sampleFindings, seal, testKey, trustOf } from '../test/collector/fixtures.ts'
import { createAuditEventGenerator } from './audit-events.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({
  options: { events: { type: 'string', default: '1000000' }, 'per-batch': { type: 'string', default: '800' }, keep: { type: 'boolean', default: false } },
  strict: true,
})
const EVENTS = Number(values.events)
const PER_BATCH = Number(values['per-batch'])
const STREAMS = ['cp-1', 'cp-2', 'cp-3']
const START = Date.parse('2026-11-24T00:00:00Z')
// 12 events/s of virtual clock: a million events span about 23 hours ("today").
const EVENTS_PER_SECOND = 12
const BATCHES_PER_REQUEST = 4
const USER = 'alice@example.com'
const HOUR = { since: START + 10 * 3_600_000, until: START + 11 * 3_600_000 }
const say = (s: string) => process.stdout.write(`${s}\n`)
const MiB = 1024 * 1024

const dir = mkdtempSync(join(tmpdir(), 'auditrail-bench-query-'))
const key = testKey()
const { token, line } = newToken('auditor', 'bench')
const readers = parseReaders(`${line}\n`)
const open = (name: string, index: boolean) => startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: join(dir, name), trustedKeys: trustOf(key), index, ...(index ? { readers } : {}) })
const plain = await open('plain', false)

// What the queries must return, known from the events as they are generated.
const expected = { userHour: [] as string[], object: new Map<string, string[]>(), high: [] as string[], highFindings: 0 }
const generator = createAuditEventGenerator({ seed: 1, startTimeMs: START, eventsPerSecond: EVENTS_PER_SECOND })
const chains = STREAMS.map((stream) => ({ stream, sequence: 0, prev: Buffer.alloc(0) as Buffer }))
let generated = 0
let bytes = 0
const pushMs = { plain: 0, indexed: 0 }
/** Sealed batches waiting to be pushed, per stream. */
let pending: SealedBatch[][] = STREAMS.map(() => [])

say(`auditrail bench:query: ${EVENTS} events in batches of ${PER_BATCH} over ${STREAMS.length} streams (node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}); store in ${dir}`)
const started = performance.now()
for (let n = 0; generated < EVENTS; n++) {
  const chain = chains[n % chains.length]!
  const lines: string[] = []
  const findings = []
  const sequence = chain.sequence + 1
  for (let i = 0; i < PER_BATCH && generated < EVENTS; i++, generated++) {
    const l = generator.next()
    lines.push(l)
    bytes += l.length + 1
    const fs = sampleFindings(l)
    for (const f of fs) findings.push({ ...f, recordIndex: i })
    const e = JSON.parse(l)
    const id = `${chain.stream}:${sequence}:${i}`
    const time = Date.parse(e.stageTimestamp)
    if (e.user?.username === USER && time >= HOUR.since && time < HOUR.until) expected.userHour.push(`${time}|${id}`)
    if (e.objectRef?.resource === 'clusterrolebindings' && e.objectRef.name) {
      const list = expected.object.get(e.objectRef.name) ?? []
      list.push(`${time}|${id}`)
      expected.object.set(e.objectRef.name, list)
    }
    const high = fs.filter((f) => SEVERITIES.indexOf(f.severity) >= SEVERITIES.indexOf('high')).length
    if (high > 0) expected.high.push(`${time}|${id}`)
    expected.highFindings += high
  }
  const records = lines.map((l, i) => ({ offset: i, line: Buffer.from(l) }))
  const sealed = seal(batchOf(chain.stream, sequence, chain.prev, records, { findings, createdUnixMs: START + n }), key)
  chain.sequence = sequence
  chain.prev = batchDigest(sealed.batch)
  pending[n % chains.length]!.push(sealed)
  if (pending.at(-1)!.length === BATCHES_PER_REQUEST || generated === EVENTS) {
    await flush(plain, 'plain', pending)
    pending = STREAMS.map(() => [])
  }
  if (n % 100 === 0) process.stderr.write(`\r${generated} events`)
}
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

async function query(kind: 'events' | 'findings', params: Record<string, string | number>): Promise<{ ms: number; rows: Array<{ time: string; stream: string; sequence: number; recordIndex: number }>; next: string | null }> {
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]))
  const t0 = performance.now()
  const res = await fetch(`${indexed.url}/v1/${kind}?${qs}`, { headers: { authorization: `Bearer ${token}` } })
  const body = await res.text()
  const ms = performance.now() - t0
  if (res.status !== 200) throw new Error(`${res.status} ${body}`)
  return { ms, rows: body.split('\n').filter(Boolean).map((l) => JSON.parse(l)), next: res.headers.get('auditrail-next-cursor') }
}

/** First page (median of 5 runs, limit 1000) and every page, checked against the expected ids. */
async function timed(what: string, kind: 'events' | 'findings', params: Record<string, string | number>, want: string[]) {
  const firsts: number[] = []
  for (let i = 0; i < 5; i++) firsts.push((await query(kind, { ...params, limit: 1000 })).ms)
  const t0 = performance.now()
  const ids: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page = await query(kind, { ...params, limit: 1000, ...(cursor ? { cursor } : {}) })
    ids.push(...page.rows.map((r) => `${Date.parse(r.time)}|${r.stream}:${r.sequence}:${r.recordIndex}`))
    cursor = page.next
    pages++
  } while (cursor)
  const allMs = performance.now() - t0
  const order = (a: string, b: string) => {
    const [ta, ia] = a.split('|') as [string, string]
    const [tb, ib] = b.split('|') as [string, string]
    const [sa, qa, ra] = ia.split(':')
    const [sb, qb, rb] = ib.split(':')
    return Number(ta) - Number(tb) || (sa! < sb! ? -1 : sa! > sb! ? 1 : 0) || Number(qa) - Number(qb) || Number(ra) - Number(rb)
  }
  const correct = JSON.stringify(ids) === JSON.stringify([...want].sort(order))
  const first = firsts.sort((a, b) => a - b)[2]!
  say(`   ${what.padEnd(44)} ${String(ids.length).padStart(6)} results; first page ${first.toFixed(0).padStart(4)} ms; all ${pages} pages ${allMs.toFixed(0).padStart(5)} ms; ${correct ? 'exact' : 'WRONG'}`)
  return { what, results: ids.length, firstPageMs: first, allPagesMs: allMs, pages, correct }
}

const [name, objectIds] = [...expected.object.entries()].sort((a, b) => b[1].length - a[1].length)[0]!
say(`2. queries (GET over HTTP, limit 1000, JSON lines with the raw events):`)
const queries = [
  await timed(`user ${USER}, one hour`, 'events', { user: USER, since: new Date(HOUR.since).toISOString(), until: new Date(HOUR.until).toISOString() }, expected.userHour),
  await timed(`clusterrolebindings/${name}`, 'events', { resource: 'clusterrolebindings', name }, objectIds),
  await timed('events with a finding of at least high', 'events', { severity: 'high' }, expected.high),
]
const findingsPage = await query('findings', { severity: 'high', since: new Date(START).toISOString(), limit: 1000 })
say(`   ${'findings of at least high today (first page)'.padEnd(44)} ${String(findingsPage.rows.length).padStart(6)} results in ${findingsPage.ms.toFixed(0)} ms (of ${expected.highFindings})`)

// --- sizes and reindex

await indexed.close()
const size = (p: string) => (existsSync(p) ? statSync(p).size : 0)
const indexBytes = size(indexPath(join(dir, 'indexed'))) + size(`${indexPath(join(dir, 'indexed'))}-wal`)
const storeBytes = du(join(dir, 'plain', 'streams'))
const store = await openFileStore(join(dir, 'indexed'))
const reindex = await rebuildIndex(join(dir, 'indexed'))
await store.close()
const rebuiltBytes = size(indexPath(join(dir, 'indexed')))
const perMillion = 1_000_000 / generated
say(`3. index size: ${(indexBytes / MiB).toFixed(0)} MiB live (${((indexBytes * perMillion) / MiB).toFixed(0)} MiB per million events; segments ${(storeBytes / MiB).toFixed(0)} MiB), ${(rebuiltBytes / MiB).toFixed(0)} MiB rebuilt`)
say(`   reindex from the segments: ${(reindex.ms / 1000).toFixed(1)} s (${Math.round(reindex.events / (reindex.ms / 1000))} events/s)`)

function du(path: string): number {
  let total = 0
  for (const stream of STREAMS) {
    const d = join(path, stream)
    for (const f of existsSync(d) ? readdirSync(d) : []) total += statSync(join(d, f)).size
  }
  return total
}

const result = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, ingest, queries, findingsFirstPageMs: findingsPage.ms, indexBytes, storeBytes, rebuiltBytes, reindex }
mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
const jsonFile = join(ROOT, 'bench-out', `bench-query-${result.date.replace(/[:.]/g, '-')}.json`)
writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)
const row = `| ${result.date.slice(0, 10)} | ${process.version} | ${result.cpu} x${result.cores} | ${generated} | ${Math.round(ingest.plainEventsPerSecond)} / ${Math.round(ingest.indexedEventsPerSecond)} | ${Math.round(ingest.indexEventsPerSecond)} (${ingest.indexCaughtUpSecondsAfterLastAck.toFixed(0)} s) | ${ingest.indexMsPerBatchMean.toFixed(1)} / ${ingest.indexMsPerBatchMax.toFixed(0)} | ${((indexBytes * perMillion) / MiB).toFixed(0)} MiB | ${queries.map((q) => `${q.firstPageMs.toFixed(0)} (${q.results})`).join(' · ')} | ${findingsPage.ms.toFixed(0)} | ${(reindex.ms / 1000).toFixed(0)} s | ${queries.every((q) => q.correct) ? 'yes' : 'NO'} |`
insertBenchmarkRow(join(ROOT, 'docs', 'benchmarks.md'), 'Query index', row)
say(`figures: ${jsonFile}; row added to the Query index table of docs/benchmarks.md`)
if (!values.keep) rmSync(dir, { recursive: true, force: true })
else say(`kept ${dir}`)
if (!queries.every((q) => q.correct)) process.exitCode = 1

