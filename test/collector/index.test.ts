// The index against a brute-force scan of the store: generated traffic pushed to a
// real collector over HTTP, then every filter answered through GET /v1/events and
// /v1/findings (all pages) must equal what a scan of every stored line finds, on a
// directory (the SQLite index) and on PostgreSQL (its index tables) alike.
// Reindexing from scratch, and catching up at start-up, must give the same answers.
import { rmSync } from 'node:fs'
import t, { type Test } from 'tap'
import { EventIndex, indexPath, rebuildIndex } from '../../collector/index.ts'
import { parseQuery, QueryEngine, SqliteIndexBackend } from '../../collector/query.ts'
import { parseReaders } from '../../collector/readers.ts'
import { startCollector } from '../../collector/server.ts'
import { reading } from '../../collector/store/open.ts'
import { decodeBatch, decodeSealedBatch, encodePushBatchRequest, PUSH_BATCH_PATH, SEVERITIES, severityRank, type Severity } from '../../proto/wire.ts'
import { generatedBatches, post, testKey, trustOf, type GeneratedBatches } from './fixtures.ts'
import { freshStore, STORE_KINDS, type StoreKind } from './stores.ts'

const key = testKey()
const TOKEN = 'test-token-for-the-index-test'
const readers = parseReaders(`auditor sha256:${(await import('node:crypto')).createHash('sha256').update(TOKEN).digest('hex')} tester\n`)
const START = Date.parse('2026-11-25T10:00:00Z')
const EVENTS = 14_000
// 3.5 events/s of virtual clock: 14,000 events span a little over an hour.
const generated = generatedBatches({ events: EVENTS, perBatch: 400, streams: ['node-a', 'node-b'], key, startTimeMs: START, eventsPerSecond: 3.5 })

interface Scanned {
  id: string
  stream: string
  sequence: number
  record: number
  time: number
  e: any
  severities: number[]
  findingIds: string[]
}

/** Every event line in the store, by reading every segment entry: the brute force the index must equal. */
async function scan(spec: string): Promise<Scanned[]> {
  const out: Scanned[] = []
  await reading(spec, async (store) => {
    for (const stream of await store.streams()) {
      for await (const item of store.entries(stream)) {
        if (item.kind !== 'entry') throw new Error(item.kind === 'bad' ? item.reason : `empty segment ${item.segment}`)
        const batch = decodeBatch(decodeSealedBatch(item.bytes).batch)
        batch.records.forEach((r, i) => {
          if (!r.line) return
          const e = JSON.parse(Buffer.from(r.line).toString())
          const fs = batch.findings.filter((f) => f.recordIndex === i)
          out.push({ id: `${stream}:${batch.sequence}:${i}`, stream, sequence: batch.sequence, record: i, time: Date.parse(e.stageTimestamp), e, severities: fs.map((f) => severityRank(f.severity)), findingIds: fs.map((f) => f.id) })
        })
      }
    }
  })
  return out.sort((a, b) => a.time - b.time || (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0) || a.sequence - b.sequence || a.record - b.record)
}

async function loadedCollector(t: Test, data: GeneratedBatches = generated, kind: StoreKind = 'file') {
  const dir = kind === 'file' ? t.testdir() : await freshStore(t, kind)
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key), readers })
  t.teardown(() => c.close())
  for (const chain of data.chains) {
    for (let i = 0; i < chain.sealed.length; i += 8) {
      const res = await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(chain.sealed.slice(i, i + 8)))
      if (res.status !== 200) throw new Error(res.body.toString())
    }
  }
  // A PostgreSQL store indexes each batch in its insert transaction: nothing to wait for.
  await c.indexer?.idle()
  return { ...c, dir }
}

async function get(url: string, path: string): Promise<{ status: number; body: string; next: string | null }> {
  const res = await fetch(new URL(path, url), { headers: { authorization: `Bearer ${TOKEN}` } })
  return { status: res.status, body: await res.text(), next: res.headers.get('auditrail-next-cursor') }
}

/** Every page of a query, as "stream:sequence:index" ids (findings: with the finding id). */
async function all(url: string, kind: 'events' | 'findings', params: Record<string, string>, limit = 1000): Promise<{ ids: string[]; rows: any[] }> {
  const rows: any[] = []
  let cursor: string | null = null
  do {
    const qs = new URLSearchParams({ ...params, limit: String(limit), ...(cursor ? { cursor } : {}) })
    const res = await get(url, `/v1/${kind}?${qs}`)
    if (res.status !== 200) throw new Error(`${res.status} ${res.body}`)
    rows.push(...res.body.split('\n').filter(Boolean).map((l) => JSON.parse(l)))
    cursor = res.next
  } while (cursor)
  return { ids: rows.map((r) => `${r.stream}:${r.sequence}:${r.recordIndex}${kind === 'findings' ? `#${r.finding.id}` : ''}`), rows }
}

for (const kind of STORE_KINDS) t.test(`${kind} store: every filter answers exactly what a scan of the store finds, across pages`, async (t) => {
  const c = await loadedCollector(t, generated, kind)
  const events = await scan(c.dir)
  t.equal(events.length, EVENTS, 'every generated event is stored')
  t.ok(events.at(-1)!.time - events[0]!.time > 3_600_000, 'the events span more than an hour')
  const hour = { since: new Date(START + 600_000).toISOString(), until: String(START + 4_200_000) }
  const inHour = (s: Scanned) => s.time >= START + 600_000 && s.time < START + 4_200_000
  const crb = events.find((s) => s.e.objectRef?.resource === 'clusterrolebindings' && s.e.objectRef?.name)!.e.objectRef.name as string
  const someAuditId = events[1234]!.e.auditID as string
  const someIp = events[77]!.e.sourceIPs[0] as string
  const atLeast = (sev: Severity) => (s: Scanned) => s.severities.some((r) => r >= SEVERITIES.indexOf(sev))

  const cases: Array<[string, Record<string, string>, (s: Scanned) => boolean]> = [
    ['user and hour', { user: 'alice@example.com', ...hour }, (s) => s.e.user?.username === 'alice@example.com' && inHour(s)],
    ['resource and name', { resource: 'clusterrolebindings', name: crb }, (s) => s.e.objectRef?.resource === 'clusterrolebindings' && s.e.objectRef?.name === crb],
    ['minimum severity high', { severity: 'high' }, atLeast('high')],
    ['group', { group: 'system:serviceaccounts:kube-system' }, (s) => (s.e.user?.groups ?? []).includes('system:serviceaccounts:kube-system')],
    ['verb, namespace and code', { verb: 'get', namespace: 'kube-system', code: '200' }, (s) => s.e.verb === 'get' && s.e.objectRef?.namespace === 'kube-system' && s.e.responseStatus?.code === 200],
    ['core API group, stage, stream', { apiGroup: '', stage: 'ResponseComplete', stream: 'node-b', resource: 'secrets' }, (s) => !!s.e.objectRef && !s.e.objectRef.apiGroup && s.e.stage === 'ResponseComplete' && s.stream === 'node-b' && s.e.objectRef.resource === 'secrets'],
    ['subresource', { subresource: 'exec' }, (s) => s.e.objectRef?.subresource === 'exec'],
    ['API group', { apiGroup: 'rbac.authorization.k8s.io', verb: 'create' }, (s) => s.e.objectRef?.apiGroup === 'rbac.authorization.k8s.io' && s.e.verb === 'create'],
    ['auditId', { auditId: someAuditId }, (s) => s.e.auditID === someAuditId],
    ['source IP', { sourceIp: someIp, until: hour.until }, (s) => s.e.sourceIPs?.[0] === someIp && s.time < START + 4_200_000],
    ['finding id', { finding: 'pod-exec' }, (s) => s.findingIds.includes('pod-exec')],
    ['forbidden', { code: '403' }, (s) => s.e.responseStatus?.code === 403],
    ['impersonated user (none in this traffic)', { impersonatedUser: 'alice@example.com' }, (s) => s.e.impersonatedUser?.username === 'alice@example.com'],
  ]
  for (const [what, params, match] of cases) {
    const expected = events.filter(match).map((s) => s.id)
    const { ids } = await all(c.url, 'events', params)
    t.same(ids, expected, `${what}: ${expected.length} events`)
  }
  t.ok(events.filter(atLeast('high')).length > 50, 'the severity query has something to find')
  t.ok(events.filter((s) => s.e.user?.username === 'alice@example.com' && inHour(s)).length > 50, 'the user query has something to find')

  // Findings: one row per finding of at least the severity, in the same order.
  const findings = events.flatMap((s) => s.findingIds.map((id, n) => ({ id: `${s.id}#${id}`, rank: s.severities[n]! }))).filter((f) => f.rank >= SEVERITIES.indexOf('medium')).map((f) => f.id)
  t.same((await all(c.url, 'findings', { severity: 'medium' })).ids, findings, `findings of at least medium: ${findings.length}`)

  // Small pages give the same answer as one large one, and the rows carry the raw event and proof.
  const small = await all(c.url, 'events', { user: 'bob@example.com' }, 37)
  t.same(small.ids, events.filter((s) => s.e.user?.username === 'bob@example.com').map((s) => s.id), 'pages of 37 add up')
  const row = small.rows[5]
  const stored = events.find((s) => s.id === `${row.stream}:${row.sequence}:${row.recordIndex}`)!
  t.same(row.event, stored.e, 'the raw event comes back as stored')
  t.match(row, { time: new Date(stored.time).toISOString() })
  // Where the batch lies: a segment and byte in a directory; a database row has no such place.
  if (kind === 'file') t.match(row, { segment: /^\d{20}\.seg$/, offset: Number })
  else t.notOk('segment' in row || 'offset' in row, 'no file coordinates from a database')
  const withFindings = (await all(c.url, 'events', { finding: 'rbac-binding-change' })).rows[0]
  t.match(withFindings.findings, [{ id: 'rbac-binding-change', severity: 'critical', source: 'rule', message: String }])

  // A time range is half-open: until excludes.
  const t0 = events[500]!.time
  const { ids } = await all(c.url, 'events', { since: String(t0), until: String(t0 + 1) })
  t.same(ids, events.filter((s) => s.time === t0).map((s) => s.id))
})

/** Answers of a few queries, straight from an index file. */
async function answers(dir: string): Promise<unknown[]> {
  const index = new EventIndex(indexPath(dir), { readOnly: true })
  try {
    const engine = new QueryEngine(new SqliteIndexBackend(index, dir))
    const out: unknown[] = []
    for (const [kind, qs] of [['events', 'user=carol@example.com&limit=1000'], ['events', 'resource=secrets&limit=1000'], ['findings', 'severity=low&limit=1000'], ['events', 'verb=delete&limit=1000']] as const) {
      out.push((await engine.run(parseQuery(kind, new URLSearchParams(qs)))).results)
    }
    // The whole index, row by row, except the row ids (which only number insertions).
    // Row and term ids only number insertions (a rebuild goes stream by stream): compare what they stand for.
    out.push(index.db.prepare('SELECT time, stream, sequence, record, segment, entry_offset, line_position, line_length, user, impersonated_user, source_ip, verb, resource, subresource, api_group, namespace, name, code, audit_id, stage, severity FROM events_view ORDER BY stream, sequence, record').all())
    out.push(index.db.prepare('SELECT e.stream, e.sequence, e.record, t.term FROM event_groups g JOIN events e ON e.id = g.event JOIN terms t ON t.id = g.grp ORDER BY 1, 2, 3, 4').all())
    out.push(index.db.prepare('SELECT e.stream, e.sequence, e.record, f.n, f.time, f.finding_id, f.severity, f.source, f.message FROM findings f JOIN events e ON e.id = f.event ORDER BY 1, 2, 3, 4').all())
    out.push(index.db.prepare('SELECT * FROM streams ORDER BY stream').all())
    return out
  } finally {
    index.close()
  }
}

const small = generatedBatches({ events: 4500, perBatch: 225, streams: ['node-a', 'node-b', 'node-c'], key, startTimeMs: START, seed: 7 })

t.test('reindex from the segments gives the same index and the same answers', async (t) => {
  const c = await loadedCollector(t, small)
  await c.close()
  const live = await answers(c.dir)
  t.equal((live[4] as unknown[]).length, 4500)
  const summary = await rebuildIndex(c.dir)
  t.match(summary, { streams: 3, batches: 20, events: 4500 })
  t.same(await answers(c.dir), live)
})

t.test('at start-up the collector builds a missing index, and catches up one that is behind', async (t) => {
  const c = await loadedCollector(t, small)
  await c.close()
  const live = await answers(c.dir)

  rmSync(indexPath(c.dir))
  const again = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: c.dir, trustedKeys: trustOf(key) })
  await again.indexer!.idle()
  await again.close()
  t.same(await answers(c.dir), live, 'rebuilt from nothing')

  // Behind: the first half of each chain indexed, the rest appended by a collector without index.
  const dir = t.testdir()
  const half = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key) })
  const push = async (url: string, from: number, to: number) => {
    for (const chain of small.chains) await post(url, PUSH_BATCH_PATH, encodePushBatchRequest(chain.sealed.slice(from, to)))
  }
  await push(half.url, 0, 3)
  await half.close()
  const noIndex = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key), index: false })
  await push(noIndex.url, 3, 7)
  await noIndex.close()
  const behind = new EventIndex(indexPath(dir), { readOnly: true })
  t.equal(behind.indexedSequence('node-a'), 3)
  behind.close()
  const caughtUp = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key) })
  await push(caughtUp.url, 7, 100) // appends arrive while it catches up
  await caughtUp.indexer!.idle()
  await caughtUp.close()
  t.same(await answers(dir), live, 'caught up from the segments, then live again')
})

t.test('indexing a full batch: measured, off the ack path', async (t) => {
  // ~1 MiB: what the agent's default batch limit allows (about 800 generated events of ~1.3 KB).
  const big = generatedBatches({ events: 800 * 6, perBatch: 800, key, startTimeMs: START, seed: 3 })
  const dir = t.testdir()
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: dir, trustedKeys: trustOf(key) })
  t.teardown(() => c.close())
  const times: number[] = []
  for (const s of big.chains[0]!.sealed) {
    await post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest([s]))
    await c.indexer!.idle()
    times.push(c.indexer!.stats.lastBatchMs)
  }
  t.equal(c.indexer!.stats.indexedBatches, 6)
  const median = times.sort((a, b) => a - b)[3]!
  t.comment(`index time per ~${(big.chains[0]!.sealed[0]!.batch.length / 1048576).toFixed(2)} MiB batch of 800 events: median ${median.toFixed(1)} ms, max ${times.at(-1)!.toFixed(1)} ms`)
  t.ok(median < 250, `median ${median.toFixed(1)} ms (generous bound for a loaded CI machine)`)
})


