// Several collectors on one PostgreSQL database, over real HTTP on 127.0.0.1: racing on one
// stream they keep one chain with every batch once; with the database down they answer
// `unavailable` (never ok without a commit), say so on /readyz, and recover by themselves.
import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import { parseReaders } from '../../collector/readers.ts'
import { startCollector, type Collector } from '../../collector/server.ts'
import { verifyStore } from '../../collector/verify.ts'
import { batchDigest, decodeGetStreamHeadResponse, decodePushBatchResponse, encodePushBatchRequest, GET_STREAM_HEAD_PATH, PUSH_BATCH_PATH, type SealedBatch } from '../../proto/wire.ts'
import { batchOf, Chain, headRequest, linesToRecords, post, seal, testKey, trustOf } from './fixtures.ts'
import { freshStore, postgresServer } from './stores.ts'

const key = testKey()
const trusted = trustOf(key)

const TOKEN = 'reader-token-of-the-collectors-test'
const readers = parseReaders(`auditor sha256:${createHash('sha256').update(TOKEN).digest('hex')} tester\n`)

async function collector(t: Test, url: string): Promise<Collector> {
  const c = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: url, trustedKeys: trusted, readers, limits: { streamBurst: 1000, streamRequestsPerSecond: 1000, maxStreamsPerKey: 10 } })
  t.teardown(() => c.close())
  return c
}

const push = (c: Collector, batches: SealedBatch[]) => post(c.url, PUSH_BATCH_PATH, encodePushBatchRequest(batches))
const codeOf = (res: { body: Buffer }) => (JSON.parse(res.body.toString()) as { code: string }).code

async function rows(url: string): Promise<Array<{ stream: string; sequence: string }>> {
  const server = await postgresServer()
  return server.admin(new URL(url).pathname.slice(1), 'SELECT stream, sequence FROM auditrail.batches ORDER BY stream, sequence')
}

t.test('two collectors given the same batches at once: one chain, every batch stored once, every request acknowledged', async (t) => {
  const url = await freshStore(t, 'postgres')
  const [a, b] = [await collector(t, url), await collector(t, url)]
  const chain = new Chain('node-a', key)
  const sealed = chain.grow(60, 2)
  let sent = 0
  // Windows that overlap differently on each side, so that each collector in turn finds the other ahead of it.
  for (let at = 0; at < sealed.length; at += 4) {
    const [wa, wb] = [sealed.slice(at, at + 4), sealed.slice(Math.max(0, at - 1), at + 5)]
    sent += wa.length + wb.length
    const [ra, rb] = await Promise.all([push(a, wa), push(b, wb)])
    t.equal(ra.status, 200, `a at ${at}: ${ra.body.toString()}`)
    t.equal(rb.status, 200, `b at ${at}: ${rb.body.toString()}`)
    t.ok(decodePushBatchResponse(ra.body).acknowledgedSequence >= Math.min(at + 4, 60), 'a acknowledges at least what it sent')
  }
  const stored = await rows(url)
  t.same(stored.map((r) => Number(r.sequence)), Array.from({ length: 60 }, (_, i) => i + 1), 'sequences 1..60, each once')
  const accepted = a.stats().acceptedBatches + b.stats().acceptedBatches
  t.equal(accepted, 60, 'between them, each batch was appended once')
  t.ok(a.stats().acceptedBatches > 0 && b.stats().acceptedBatches > 0, `both appended some (a ${a.stats().acceptedBatches}, b ${b.stats().acceptedBatches})`)
  t.equal(a.stats().duplicateBatches + b.stats().duplicateBatches, sent - 60, 'the rest were acknowledged as already stored')
  // The query index is written in the insert's transaction: each batch indexed once, whichever collector stored it.
  const server = await postgresServer()
  const indexed = await server.admin<{ batches: string; events: string; distinct: string }>(new URL(url).pathname.slice(1),
    "SELECT (SELECT count(*) FROM auditrail.indexed_batches) AS batches, count(*) AS events, count(DISTINCT (stream, sequence, record)) AS distinct FROM auditrail.events")
  t.same(indexed, [{ batches: '60', events: '120', distinct: '120' }], 'every batch and each of its 2 events indexed once')
  // Any collector of the database answers for what another stored, at once (no index to catch up).
  const last = sealed.at(-1)!
  t.equal((await push(a, [last])).status, 200)
  for (const c of [a, b]) {
    const res = await fetch(`${c.url}/v1/events?auditId=60-1`, { headers: { authorization: `Bearer ${TOKEN}` } })
    t.same((await res.text()).trim().split('\n').map((l) => JSON.parse(l).sequence), [60], 'the last batch, found once')
  }
  const verified = await verifyStore(url, trusted)
  t.equal(verified.ok, true, JSON.stringify(verified.problem))
})

t.test('two different batches for one sequence, at once on two collectors: one is stored, the other refused as a fork', async (t) => {
  const url = await freshStore(t, 'postgres')
  const [a, b] = [await collector(t, url), await collector(t, url)]
  for (let round = 0; round < 5; round++) {
    const stream = `node-${round}`
    const common = new Chain(stream, key).grow(1)
    t.equal((await push(a, common)).status, 200)
    // Same sequence 2 and the same link, different content: the two forks of a chain.
    const fork = (line: string) => seal(batchOf(stream, 2, batchDigest(common[0]!.batch), linesToRecords([line])), key)
    const [left, right] = [fork('{"fork":"left"}'), fork('{"fork":"right"}')]
    const [ra, rb] = await Promise.all([push(a, [left]), push(b, [right])])
    const statuses = [ra.status, rb.status].sort()
    t.same(statuses, [200, 409], `round ${round}: one ok, one already_exists (${ra.body.toString()} / ${rb.body.toString()})`)
    const refused = ra.status === 409 ? ra : rb
    t.equal(codeOf(refused), 'already_exists')
  }
  const stored = await rows(url)
  t.equal(stored.length, 10, 'two batches per stream')
  t.equal((await verifyStore(url, trusted)).ok, true)
})

t.test('PostgreSQL down while running: unavailable, /readyz says so, recovers by itself', async (t) => {
  const server = await postgresServer()
  const url = await freshStore(t, 'postgres')
  const c = await collector(t, url)
  const chain = new Chain('node-a', key)
  t.equal((await push(c, chain.grow(3))).status, 200)
  t.equal((await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')).status, 200)

  server.stop()
  const next = chain.grow(1)
  const refused = await push(c, next)
  t.equal(refused.status, 503)
  t.equal(codeOf(refused), 'unavailable', 'not ok without a commit')
  const head = await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-a', key))
  t.equal(codeOf(head), 'unavailable')
  await waitFor(async () => (await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')).status === 503)
  const ready = await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')
  t.match(ready.body.toString(), /PostgreSQL/)
  t.equal((await post(c.url, '/livez', Buffer.alloc(0), {}, 'GET')).status, 200, 'alive all the same: a restart would not help')
  // A query meanwhile: 503 and retry, as for a push; never an answer that looks like "no such events".
  const query = await fetch(`${c.url}/v1/events?stream=node-a`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(query.status, 503)
  t.equal(query.headers.get('retry-after'), '1')
  t.match(((await query.json()) as { error: string }).error, /the index cannot be read now \(PostgreSQL at .*\); retry/)

  server.start()
  await waitFor(async () => (await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')).status === 200)
  const retried = await push(c, next)
  t.equal(retried.status, 200, retried.body.toString())
  t.equal(decodePushBatchResponse(retried.body).acknowledgedSequence, 4)
  const again = await fetch(`${c.url}/v1/events?stream=node-a`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal((await again.text()).trim().split('\n').length, 12, 'and queries answer again once it is back: 4 batches of 3 events')
  t.same(Buffer.from(decodeGetStreamHeadResponse((await post(c.url, GET_STREAM_HEAD_PATH, headRequest('node-a', key))).body)!.batch), Buffer.from(next[0]!.batch))
  t.equal((await verifyStore(url, trusted)).ok, true)
})

t.test('PostgreSQL down at the collector\'s start: it starts, answers unavailable, and takes batches once the database is back', async (t) => {
  const server = await postgresServer()
  const url = await freshStore(t, 'postgres')
  server.stop()
  t.teardown(() => {
    // A failed assertion must not leave the server down for the tests after this one.
    try {
      server.start()
    } catch {}
  })
  const c = await collector(t, url)
  t.equal((await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')).status, 503)
  const chain = new Chain('node-a', key)
  const first = chain.grow(2)
  t.equal(codeOf(await push(c, first)), 'unavailable')
  server.start()
  await waitFor(async () => (await post(c.url, '/readyz', Buffer.alloc(0), {}, 'GET')).status === 200)
  const res = await push(c, first)
  t.equal(res.status, 200, res.body.toString())
  t.equal(decodePushBatchResponse(res.body).acknowledgedSequence, 2)
})

async function waitFor(condition: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const until = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
