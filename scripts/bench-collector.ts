#!/usr/bin/env node
// `npm run bench:collector`: collectors past one machine (issue 15), on this machine.
//   1. ingest: the same sealed batches (generated once into a source directory, see
//      query-workload.ts) pushed over HTTP, one pusher per stream, all streams at once,
//      to collector processes of their own (collector-process.ts): one on a directory
//      store, one on a private PostgreSQL 15 (fsync on), and two on one PostgreSQL
//      database, the streams split between them. Events/s until every batch is
//      acknowledged and indexed; CPU per event of the collectors, of PostgreSQL (every
//      process of the server: backends, WAL writer, checkpointer) and of the pushing
//      bench; and how much of the machine's CPU that was, which says what limits it
//   2. queries at N events (a million by default): bench:query's queries, each answer
//      checked, against the directory store's SQLite index and the database's tables
//      (the store the one-collector run filled)
// Prints the figures, writes JSON to bench-out/, and adds a row to the "Collectors on
// PostgreSQL" table of docs/benchmarks.md.
//   node scripts/bench-collector.ts [--events N] [--per-batch N] [--keep]
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { newToken, parseReaders } from '../collector/readers.ts'
import { startCollector } from '../collector/server.ts'
import { openFileStore, streamEntries } from '../collector/store/file-store.ts'
import { decodeSealedBatch, encodePushBatchRequest, PUSH_BATCH_PATH, type SealedBatch } from '../proto/wire.ts'
import { appendSealed, post, testKey, trustOf } from '../test/collector/fixtures.ts'
import { startPostgres } from '../test/collector/postgres-server.ts'
import type { CollectorUsage, FromCollector, ToCollector } from './collector-process.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'
import { generateWorkload, runQueries, segmentBytes, sqliteIndexBytes, type Expected, type TimedQuery } from './query-workload.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({
  options: { events: { type: 'string', default: '1000000' }, 'per-batch': { type: 'string', default: '800' }, keep: { type: 'boolean', default: false } },
  strict: true,
})
const EVENTS = Number(values.events)
const PER_BATCH = Number(values['per-batch'])
if (!Number.isSafeInteger(EVENTS) || EVENTS < 1) throw new Error(`--events: ${values.events} is not a whole number of events above 0`)
if (!Number.isSafeInteger(PER_BATCH) || PER_BATCH < 1) throw new Error(`--per-batch: ${values['per-batch']} is not a whole number of events above 0`)
// Four streams: split evenly between two collectors.
const STREAMS = ['cp-1', 'cp-2', 'cp-3', 'cp-4']
const BATCHES_PER_REQUEST = 4
const say = (s: string) => process.stdout.write(`${s}\n`)
const MiB = 1024 * 1024
const CLOCK_TICKS = 100

const teardowns: Array<() => void | Promise<void>> = []
const dir = mkdtempSync(join(tmpdir(), 'auditrail-bench-collector-'))
const key = testKey()
const publicKeyFile = join(dir, 'node.pub.pem')
writeFileSync(publicKeyFile, key.publicKey.export({ type: 'spki', format: 'pem' }))
const { token, line } = newToken('auditor', 'bench')
const readers = parseReaders(`${line}\n`)
const load = loadavg()[0]!

try {
  say(`auditrail bench:collector: ${EVENTS} events in batches of ${PER_BATCH} over ${STREAMS.length} streams (node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}, load ${load.toFixed(1)}); in ${dir}`)
  const postgres = await startPostgres({ teardown: (fn) => teardowns.push(fn) }, { durable: true })
  const version = (await postgres.admin<{ server_version: string }>('postgres', 'SHOW server_version'))[0]!.server_version

  // The source: every batch sealed once, appended straight into a directory (no HTTP), read back by each run.
  const source = await openFileStore(join(dir, 'source'))
  const { expected, generated, bytes } = await generateWorkload({
    events: EVENTS, perBatch: PER_BATCH, streams: STREAMS, key,
    onBatch: (stream, sealed) => appendSealed(source, STREAMS[stream]!, sealed).then(() => {}),
    progress: (n) => process.stderr.write(`\rgenerated ${n} events`),
  })
  await source.close()
  process.stderr.write('\n')
  say(`generated ${generated} events (${(bytes / MiB).toFixed(0)} MiB of lines)`)

  say('1. ingest over HTTP, every stream at once, until every batch is acknowledged and indexed:')
  const file = await ingest('directory, 1 collector', [join(dir, 'file-store')], () => 0)
  const pgOne = (await postgres.database('one')).url
  const one = await ingest('PostgreSQL, 1 collector', [pgOne], postgres.pid)
  const pgTwo = (await postgres.database('two')).url
  const two = await ingest('PostgreSQL, 2 collectors', [pgTwo, pgTwo], postgres.pid)

  say(`2. queries at ${generated} events (GET over HTTP, limit 1000, JSON lines with the raw events):`)
  const queries: Record<'sqlite' | 'postgres', { queries: TimedQuery[]; findingsFirstPageMs: number }> = {
    sqlite: await queriesOn('the SQLite index of the directory store', join(dir, 'file-store'), expected),
    postgres: await queriesOn('PostgreSQL (the one-collector database)', pgOne, expected),
  }
  const sizes = {
    sqliteIndexBytes: sqliteIndexBytes(join(dir, 'file-store')),
    segmentsBytes: segmentBytes(join(dir, 'file-store')),
    ...(await postgres.admin<{ batches: number; index: number }>('one', `SELECT pg_total_relation_size('auditrail.batches')::float8 AS batches,
      (pg_total_relation_size('auditrail.events') + pg_total_relation_size('auditrail.findings') + pg_total_relation_size('auditrail.event_groups') + pg_total_relation_size('auditrail.indexed_batches'))::float8 AS index`).then(([r]) => ({ postgresBatchesBytes: r!.batches, postgresIndexBytes: r!.index }))),
  }
  const perMillion = (b: number) => `${((b * 1_000_000) / generated / MiB).toFixed(0)} MiB`
  say(`3. sizes per million events: segments ${perMillion(sizes.segmentsBytes)} + SQLite index ${perMillion(sizes.sqliteIndexBytes)}; PostgreSQL batches ${perMillion(sizes.postgresBatchesBytes)} + index tables ${perMillion(sizes.postgresIndexBytes)}`)

  const exact = [...queries.sqlite.queries, ...queries.postgres.queries].every((q) => q.correct)
  const result = { date: new Date().toISOString(), node: process.version, postgres: version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, load, events: generated, perBatch: PER_BATCH, ingest: { file, one, two }, queries, sizes, exact }
  mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
  const jsonFile = join(ROOT, 'bench-out', `bench-collector-${result.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)
  const ingestCell = (r: Ingest) => `${Math.round(r.eventsPerSecond)} · ${r.collectorCpuPerMillion.toFixed(0)} · ${r.postgresCpuPerMillion > 0 ? r.postgresCpuPerMillion.toFixed(0) : '-'} · ${(r.cpuShare * 100).toFixed(0)}%`
  const queryCell = (q: { queries: TimedQuery[]; findingsFirstPageMs: number }) => `${q.queries.map((x) => `${x.firstPageMs.toFixed(0)} (${x.results})`).join(' · ')} · ${q.findingsFirstPageMs.toFixed(0)}`
  const row = `| ${result.date.slice(0, 16).replace('T', ' ')} | ${process.version} / PG ${version} | ${result.cpu} x${result.cores} | ${load.toFixed(1)} | ${generated} | ${ingestCell(file)} | ${ingestCell(one)} | ${ingestCell(two)} | ${queryCell(queries.sqlite)} | ${queryCell(queries.postgres)} | ${perMillion(sizes.segmentsBytes + sizes.sqliteIndexBytes)} / ${perMillion(sizes.postgresBatchesBytes + sizes.postgresIndexBytes)} | ${exact ? 'yes' : 'NO'} |`
  insertBenchmarkRow(join(ROOT, 'docs', 'benchmarks.md'), 'Collectors on PostgreSQL', row)
  say(`figures: ${jsonFile}; row added to the Collectors on PostgreSQL table of docs/benchmarks.md`)
  if (!exact) process.exitCode = 1
} finally {
  for (const fn of teardowns.reverse()) await fn()
  if (!values.keep) rmSync(dir, { recursive: true, force: true })
  else say(`kept ${dir}`)
}

interface Ingest {
  what: string
  collectors: number
  seconds: number
  eventsPerSecond: number
  /** CPU seconds per million events: the collector processes (all of them), PostgreSQL's processes, the pushing bench. */
  collectorCpuPerMillion: number
  postgresCpuPerMillion: number
  benchCpuPerMillion: number
  /** Of the machine's CPU time over the run (cores x seconds), the share those three used. */
  cpuShare: number
  batches: number
}

/**
 * One run: a collector process per store spec, the streams dealt to them in turn, every
 * stream pushed at once by its own loop. `postgresPid` gives the server whose CPU counts (0: none).
 */
async function ingest(what: string, stores: string[], postgresPid: () => number): Promise<Ingest> {
  const collectors = await Promise.all(stores.map((store) => startCollectorProcess(store)))
  const pgBefore = postgresPid() ? serverCpuSeconds(postgresPid()) : 0
  const benchBefore = process.cpuUsage()
  const started = performance.now()
  let batches = 0
  await Promise.all(STREAMS.map(async (stream, i) => {
    const target = collectors[i % collectors.length]!
    let pending: SealedBatch[] = []
    const flush = async () => {
      const res = await post(target.url, PUSH_BATCH_PATH, encodePushBatchRequest(pending))
      if (res.status !== 200) throw new Error(`${what}: ${res.status} ${res.body.toString()}`)
      batches += pending.length
      pending = []
    }
    for await (const { item } of streamEntries(join(dir, 'source'), stream)) {
      if (item.kind !== 'entry') throw new Error(`source store: ${item.reason}`)
      pending.push(decodeSealedBatch(item.bytes))
      if (pending.length === BATCHES_PER_REQUEST) await flush()
    }
    if (pending.length > 0) await flush()
  }))
  const usages = await Promise.all(collectors.map((c) => c.idle()))
  const seconds = (performance.now() - started) / 1000
  const bench = process.cpuUsage(benchBefore)
  const pgCpu = postgresPid() ? serverCpuSeconds(postgresPid()) - pgBefore : 0
  await Promise.all(collectors.map((c) => c.close()))
  const collectorCpu = usages.reduce((sum, u, i) => sum + u.cpuSeconds - collectors[i]!.startCpu, 0)
  const benchCpu = (bench.user + bench.system) / 1e6
  const perMillion = (s: number) => (s * 1_000_000) / EVENTS
  const r: Ingest = {
    what, collectors: collectors.length, seconds, eventsPerSecond: EVENTS / seconds, batches,
    collectorCpuPerMillion: perMillion(collectorCpu), postgresCpuPerMillion: perMillion(pgCpu), benchCpuPerMillion: perMillion(benchCpu),
    cpuShare: (collectorCpu + pgCpu + benchCpu) / (seconds * cpus().length),
  }
  say(`   ${what.padEnd(26)} ${Math.round(r.eventsPerSecond).toString().padStart(6)} events/s (${seconds.toFixed(1)} s); CPU s per million events: collectors ${r.collectorCpuPerMillion.toFixed(0)}, PostgreSQL ${r.postgresCpuPerMillion.toFixed(0)}, bench ${r.benchCpuPerMillion.toFixed(0)}; ${(r.cpuShare * 100).toFixed(0)}% of the machine's CPU`)
  return r
}

async function startCollectorProcess(store: string): Promise<{ url: string; startCpu: number; idle: () => Promise<CollectorUsage>; close: () => Promise<void> }> {
  const child = fork(fileURLToPath(new URL('./collector-process.ts', import.meta.url)), [store, publicKeyFile], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = once(child, 'exit')
  const [first] = (await once(child, 'message')) as [FromCollector]
  if (!('ready' in first)) throw new Error('the collector process did not start')
  const ask = async (m: ToCollector) => {
    child.send(m)
    const [answer] = (await once(child, 'message')) as [FromCollector]
    if (!('idle' in answer)) throw new Error('the collector process answered out of turn')
    return answer.idle
  }
  return {
    url: `http://127.0.0.1:${first.ready}`,
    startCpu: first.usage.cpuSeconds,
    idle: () => ask('idle'),
    close: async () => {
      child.send('close' satisfies ToCollector)
      await exited
    },
  }
}

/** CPU seconds of a PostgreSQL server: its main process and every child (backends, WAL writer, checkpointer...), from /proc. */
function serverCpuSeconds(pid: number): number {
  let ticks = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    // Fields after the command name (which may hold spaces, in parentheses): state, ppid, ...; utime and stime are the 14th and 15th fields.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(entry) === pid || Number(fields[1]) === pid) ticks += Number(fields[11]) + Number(fields[12])
  }
  return ticks / CLOCK_TICKS
}

async function queriesOn(what: string, store: string, expected: Expected): Promise<{ queries: TimedQuery[]; findingsFirstPageMs: number }> {
  say(`   ${what}:`)
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: store, trustedKeys: trustOf(key), readers })
  try {
    await c.indexer?.idle()
    return await runQueries(c.url, token, expected, say)
  } finally {
    await c.close()
  }
}
