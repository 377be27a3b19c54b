// The generated workload of the query benchmarks (scripts/bench-query.ts, scripts/bench-collector.ts):
// events sealed into batches with the test fixtures, the answers the queries must give (known from
// generating the events), and the timed queries themselves, each answer checked against them.
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { indexPath } from '../collector/index.ts'
import { batchDigest, SEVERITIES, type SealedBatch } from '../proto/wire.ts'
import { batchOf, sampleFindings, seal, type TestKey } from '../test/collector/fixtures.ts'
import { createAuditEventGenerator } from './audit-events.ts'

export const START = Date.parse('2026-11-24T00:00:00Z')
// 12 events/s of virtual clock: a million events span about 23 hours ("today").
const EVENTS_PER_SECOND = 12
const USER = 'alice@example.com'
const HOUR = { since: START + 10 * 3_600_000, until: START + 11 * 3_600_000 }

/** What the queries must return: "time|stream:sequence:record" ids. */
export interface Expected {
  userHour: string[]
  object: Map<string, string[]>
  high: string[]
  highFindings: number
}

export interface WorkloadOptions {
  events: number
  perBatch: number
  streams: readonly string[]
  key: TestKey
  /** Each sealed batch, in order, with the index of its stream; awaited before the next. */
  onBatch: (stream: number, sealed: SealedBatch) => Promise<void>
  /** Told the number of events generated so far, now and then. */
  progress?: (generated: number) => void
}

/** Generates the events round-robin over the streams, seals them into batches and hands each over. */
export async function generateWorkload(o: WorkloadOptions): Promise<{ expected: Expected; generated: number; bytes: number }> {
  const expected: Expected = { userHour: [], object: new Map(), high: [], highFindings: 0 }
  const generator = createAuditEventGenerator({ seed: 1, startTimeMs: START, eventsPerSecond: EVENTS_PER_SECOND })
  const chains = o.streams.map((stream) => ({ stream, sequence: 0, prev: Buffer.alloc(0) as Buffer }))
  let generated = 0
  let bytes = 0
  for (let n = 0; generated < o.events; n++) {
    const chain = chains[n % chains.length]!
    const lines: string[] = []
    const findings = []
    const sequence = chain.sequence + 1
    for (let i = 0; i < o.perBatch && generated < o.events; i++, generated++) {
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
    const sealed = seal(batchOf(chain.stream, sequence, chain.prev, records, { findings, createdUnixMs: START + n }), o.key)
    chain.sequence = sequence
    chain.prev = batchDigest(sealed.batch)
    await o.onBatch(n % chains.length, sealed)
    if (n % 100 === 0) o.progress?.(generated)
  }
  return { expected, generated, bytes }
}

export interface TimedQuery {
  what: string
  results: number
  firstPageMs: number
  allPagesMs: number
  pages: number
  correct: boolean
}

/**
 * The benchmark's queries over GET (limit 1000, JSON lines with the raw events) against a collector:
 * by user and hour, by resource and name, by finding severity (first page, median of 5, and every
 * page, checked), and the first page of findings of at least high today.
 */
export async function runQueries(url: string, token: string, expected: Expected, say: (line: string) => void): Promise<{ queries: TimedQuery[]; findingsFirstPageMs: number }> {
  async function query(kind: 'events' | 'findings', params: Record<string, string | number>): Promise<{ ms: number; rows: Array<{ time: string; stream: string; sequence: number; recordIndex: number }>; next: string | null }> {
    const qs = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]))
    const t0 = performance.now()
    const res = await fetch(`${url}/v1/${kind}?${qs}`, { headers: { authorization: `Bearer ${token}` } })
    const body = await res.text()
    const ms = performance.now() - t0
    if (res.status !== 200) throw new Error(`${res.status} ${body}`)
    return { ms, rows: body.split('\n').filter(Boolean).map((l) => JSON.parse(l)), next: res.headers.get('auditrail-next-cursor') }
  }

  async function timed(what: string, kind: 'events' | 'findings', params: Record<string, string | number>, want: string[]): Promise<TimedQuery> {
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

  const [name, objectIds] = [...expected.object.entries()].sort((a, b) => b[1].length - a[1].length)[0] ?? ['none', []]
  const queries = [
    await timed(`user ${USER}, one hour`, 'events', { user: USER, since: new Date(HOUR.since).toISOString(), until: new Date(HOUR.until).toISOString() }, expected.userHour),
    await timed(`clusterrolebindings/${name}`, 'events', { resource: 'clusterrolebindings', name }, objectIds),
    await timed('events with a finding of at least high', 'events', { severity: 'high' }, expected.high),
  ]
  const findingsPage = await query('findings', { severity: 'high', since: new Date(START).toISOString(), limit: 1000 })
  say(`   ${'findings of at least high today (first page)'.padEnd(44)} ${String(findingsPage.rows.length).padStart(6)} results in ${findingsPage.ms.toFixed(0)} ms (of ${expected.highFindings})`)
  return { queries, findingsFirstPageMs: findingsPage.ms }
}

/** Bytes of a directory store's segment files (every stream). */
export function segmentBytes(storeDir: string): number {
  let total = 0
  const streams = join(storeDir, 'streams')
  for (const stream of existsSync(streams) ? readdirSync(streams) : []) {
    for (const f of readdirSync(join(streams, stream))) total += statSync(join(streams, stream, f)).size
  }
  return total
}

/** Bytes of a directory store's SQLite index, its write-ahead log included. */
export function sqliteIndexBytes(storeDir: string): number {
  const size = (p: string) => (existsSync(p) ? statSync(p).size : 0)
  return size(indexPath(storeDir)) + size(`${indexPath(storeDir)}-wal`)
}
